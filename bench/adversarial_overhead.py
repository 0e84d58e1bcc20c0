"""Seconds per optimizer step of each adversarial method relative to plain fine-tuning.

MiniLM-L6 on the first SST-2 training sentences; the methods run interleaved, round by round
(plain, FGM, PGD, FreeLB, R-Drop, plain, ...), in one process, so they share the machine's
load; each run's own engine time (``train_seconds``, model loading excluded) over its steps.
No external peer: the reference is plain fine-tuning.

Usage: .venv/bin/python bench/adversarial_overhead.py --rounds 3 --steps 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import machine_info  # noqa: E402

METHODS = {
    "plain": {},
    "fgm": {"train": {"adversarial": "fgm"}, "adv": {"epsilon": 0.2}},
    "pgd (K=2)": {"train": {"adversarial": "pgd"},
                  "adv": {"epsilon": 0.3, "alpha": 0.1, "steps": 2}},
    "freelb (K=2)": {"train": {"adversarial": "freelb"},
                     "adv": {"epsilon": 0.3, "alpha": 0.1, "steps": 2}},
    "rdrop": {"train": {"adversarial": "rdrop"}},
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    import lmforge

    machine = machine_info()
    src = ROOT.parent / "shared" / "data" / "sst2" / "train.tsv"
    if not src.is_file():
        sys.exit(f"skipped: {src} not found")
    work = Path(tempfile.mkdtemp(prefix="lmforge-advcost-"))
    rows = src.read_text(encoding="utf-8").splitlines()[: args.steps * args.batch_size + 1]
    (work / "train.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for r in range(args.rounds):
        for name, sections in METHODS.items():
            train = {"max_steps": args.steps, "batch_size": args.batch_size, "lr": 5e-5,
                     "num_threads": 1, "seed": 42, "eval_max_batches": 1,
                     **sections.get("train", {})}
            result = lmforge.finetune(
                {"data": {"path": str(work / "train.tsv"), "validation_ratio": 0.05},
                 "task": {"text_column": "sentence"},
                 "model": {"pretrained": "all-minilm-l6-v2"}},
                train=train, adv=sections.get("adv", {}),
                track={"backends": ["jsonl"], "progress": False},
                output_dir=str(work / f"{r}-{name.split()[0]}"))
            times[name].append(result.summary["train_seconds"] / result.summary["steps"])
            print(f"round {r + 1}: {name} {times[name][-1]:.2f} s/step", flush=True)
    plain = statistics.median(times["plain"])
    summary = {name: {"seconds_per_step": [round(t, 3) for t in ts],
                      "median_seconds_per_step": round(statistics.median(ts), 3),
                      "relative_to_plain": round(statistics.median(ts) / plain, 2)}
               for name, ts in times.items()}
    results = {"benchmark": "adversarial_overhead", "steps_per_run": args.steps,
               "rounds": args.rounds, "batch_size": args.batch_size,
               "command": " ".join(["bench/adversarial_overhead.py", *sys.argv[1:]]),
               "methods": summary, "machine": machine}
    out = ROOT / "bench" / "results"
    (out / "adversarial_overhead.json").write_text(json.dumps(results, indent=1) + "\n")
    table = ["| method | passes per step | median s / step | relative to plain |",
             "|---|---|---|---|"]
    passes = {"plain": "1", "fgm": "2", "pgd (K=2)": "3", "freelb (K=2)": "2",
              "rdrop": "1 (doubled batch)"}
    table += [f"| {n} | {passes[n]} | {s['median_seconds_per_step']:.2f} | "
              f"{s['relative_to_plain']:.2f}x |" for n, s in summary.items()]
    (out / "adversarial_overhead.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
