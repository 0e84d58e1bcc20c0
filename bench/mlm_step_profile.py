"""Where a BERT-mini masked-LM pretraining step's time goes (issue 15, goal 5: MFU).

The model and batch of `bench/pretrain_mlm.py`: lmforge's BERT-mini preset (4 x 256, 4 heads,
dropout 0.1, SDPA) with an 8,000-word vocabulary, one fixed batch of 32 x 128 token ids with
15 % of positions masked (random ids: the step's cost does not depend on the text), lmforge's
sparse MLM objective, bf16 autocast where the CPU has bf16 units (else fp32), fused AdamW,
clipping 1.0, lmforge's CPU dropout (`fast_dropout_scope`, what the engine applies). Each
variant is timed over ``--steps`` steps after 2 warm-up steps; the variants are interleaved
and repeated ``--repeats`` times, and both the best and the median repeat are reported.
Variants:

- ``lmforge``: the step as lmforge runs it now;
- ``with_train_argmax``: plus the masked-token accuracy (an argmax over the vocabulary at every
  masked position) in every training step, as the objective computed it before;
- ``dropout_mask_multiply``: the dropout mask applied as ``x * keep * scale`` in a custom
  autograd function instead of ``torch.where(keep, x * scale, 0)``;
- ``torch_dropout``: without lmforge's CPU dropout (torch's ``nn.Dropout`` and SDPA's own).

``torch.profiler`` top operators of the ``lmforge`` step are recorded too.

Usage: .venv/bin/python bench/mlm_step_profile.py [--steps 8] [--repeats 5]
Writes bench/results/mlm_step_profile.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

VOCAB, BATCH, LENGTH = 8000, 32, 128


class _MaskMultiply(torch.autograd.Function):
    """``x * keep * scale``, the bool mask saved for backward (the rejected alternative)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, keep: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.save_for_backward(keep)
        ctx.scale = scale
        return torch.mul(x, keep).mul_(scale)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (keep,) = ctx.saved_tensors
        return torch.mul(grad, keep).mul_(ctx.scale), None, None


def mask_multiply_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """lmforge's fast dropout (the same masks) with the mask applied by multiplication."""
    from lmforge.engine.dropout import draw_keep_mask

    drawn = draw_keep_mask(x, p)
    return x if drawn is None else _MaskMultiply.apply(x, *drawn)


def build(bf16: bool) -> tuple[Any, Any]:
    """(objective, step closure) for a fresh BERT-mini MLM and one fixed masked batch."""
    from transformers import BertForMaskedLM

    from lmforge.models.build import preset_config
    from lmforge.pretraining.objectives import IGNORE, MaskedLMObjective

    torch.manual_seed(0)
    config = preset_config("bert", "mini", VOCAB, 512, {"pad": 0})
    objective = MaskedLMObjective(BertForMaskedLM(config)).train()
    params = list(objective.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-3, fused=True)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (BATCH, LENGTH), generator=generator)
    labels = torch.full_like(ids, IGNORE)
    masked = torch.rand(BATCH, LENGTH, generator=generator) < 0.15
    labels[masked] = ids[masked]
    attention = torch.ones_like(ids)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = objective(input_ids=ids, attention_mask=attention, labels=labels)
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return objective, step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from machine import machine_info
    from step_breakdown import timed
    from transformers.utils import logging as hf_logging

    import lmforge.engine.dropout as dropout
    import lmforge.pretraining.objectives as objectives
    from lmforge.engine.precision import cpu_supports_bf16

    hf_logging.set_verbosity_error()
    bf16 = cpu_supports_bf16()
    original_dropout = dropout.fast_dropout
    original_forward = objectives.MaskedLMObjective.forward

    def forward_with_argmax(self: Any, *a: Any, **kw: Any) -> dict[str, Any]:
        # The old behaviour: the accuracy count in training too. Only the objective's own
        # flag is lowered (it decides the count); the model below it keeps training (dropout).
        was = self.training
        self.training = False
        try:
            return original_forward(self, *a, **kw)
        finally:
            self.training = was

    @contextlib.contextmanager
    def variant(name: str):  # noqa: ANN202
        dropout.fast_dropout = mask_multiply_dropout if name == "dropout_mask_multiply" \
            else original_dropout
        objectives.MaskedLMObjective.forward = forward_with_argmax \
            if name == "with_train_argmax" else original_forward
        try:
            yield
        finally:
            dropout.fast_dropout = original_dropout
            objectives.MaskedLMObjective.forward = original_forward

    variants = ("lmforge", "with_train_argmax", "dropout_mask_multiply", "torch_dropout")
    built = {name: build(bf16) for name in variants}
    results: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name in variants:
            model, step = built[name]
            with dropout.fast_dropout_scope(model, enabled=name != "torch_dropout"), \
                    variant(name):
                results[name].append(round(timed(step, args.steps, warmup=2), 1))
            print(name, results[name][-1], flush=True)

    from torch.profiler import ProfilerActivity, profile

    model, step = built["lmforge"]
    with dropout.fast_dropout_scope(model):
        for _ in range(2):
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:14]
    profile_top = [{"op": e.key, "calls_per_step": round(e.count / args.steps, 1),
                    "ms_per_step": round(e.self_cpu_time_total / 1000 / args.steps, 2),
                    "share_percent": round(100 * e.self_cpu_time_total / total, 1)}
                   for e in top]
    best = {k: min(v) for k, v in results.items()}
    median = {k: statistics.median(v) for k, v in results.items()}
    result = {"benchmark": "mlm_step_profile", "command": " ".join([sys.executable, *sys.argv]),
              "machine": machine_info(), "precision": "bf16" if bf16 else "fp32",
              "batch": [BATCH, LENGTH], "vocab": VOCAB, "ms_per_step": results,
              "best_ms_per_step": best, "median_ms_per_step": median,
              "best_vs_lmforge": {k: round(v / best["lmforge"], 3) for k, v in best.items()},
              "profile_lmforge_top_ops": profile_top}
    out = ROOT / "bench" / "results" / "mlm_step_profile.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("best_ms_per_step", "median_ms_per_step",
                                              "best_vs_lmforge")}, indent=1))
    for row in profile_top:
        print(f"{row['op']:<40} {row['ms_per_step']:8.2f} ms {row['share_percent']:5.1f} %")


if __name__ == "__main__":
    main()
