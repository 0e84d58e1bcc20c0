"""Constant-predictor baselines of the prompting benchmark's evaluation samples (no model).

`bench/prompt_smollm2.py --max-eval 200` scores a seeded sample of 200 examples per task. Its
"majority class" row predicts the most frequent *training* label; on a sample, the best
constant prediction can score more (SST-2: the training majority is "1", but the sample has
more "0"). This script rebuilds the same samples through lmforge's own data loading
(`load_task_data`, same seed and split settings) and reports both baselines, so the prompting
results can be read against the level a constant predictor reaches on the examples scored.

Usage: .venv/bin/python bench/prompt_baselines.py [--max-eval 200] [--out bench/results]
Writes bench/results/prompt_baselines.{json,md}; takes seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from prompt_smollm2 import DATA, TASKS  # noqa: E402  (same tasks and split settings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-eval", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()

    import numpy as np
    from machine import machine_info

    from lmforge.commands.prompt import load_task_data
    from lmforge.config import build_config
    from lmforge.prompting.report import constant_baseline, majority_baseline
    from lmforge.prompting.settings import PromptJob

    result: dict = {"command": " ".join(["python", *sys.argv]), "machine": machine_info(),
                    "max_eval": args.max_eval, "tasks": {}}
    md = [f"# Constant-predictor baselines of the prompting samples ({args.max_eval} "
          "examples per task)", "", "| task | examples | label counts | majority of train "
          "(label): acc / macro-F1 | best constant on the sample (label): acc / macro-F1 |",
          "|---|---:|---|---:|---:|"]
    for task, (folder, column, extra) in TASKS.items():
        if not (DATA / folder).is_dir():
            sys.exit(f"skipped: {DATA / folder} not found (the shared datasets are not here)")
        job = build_config(PromptJob, None, [
            f"data.path={DATA / folder}", f"data.text_column={column}", *extra,
            f"max_examples={args.max_eval}"])
        train, test, labels = load_task_data(job)
        y = np.array([labels.index(v) for v in test["label"]])
        majority = majority_baseline(train["label"], y, labels)
        constant = constant_baseline(y, labels)
        counts = {label: int((y == i).sum()) for i, label in enumerate(labels)}
        result["tasks"][task] = {"examples": len(y), "label_counts": counts,
                                 "majority_of_train": majority, "constant": constant}
        md.append(f"| {task} | {len(y)} | {counts} | ({majority['label']}) "
                  f"{100 * majority['accuracy']:.1f} / {100 * majority['macro_f1']:.1f} | "
                  f"({constant['label']}) {100 * constant['accuracy']:.1f} / "
                  f"{100 * constant['macro_f1']:.1f} |")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prompt_baselines.json").write_text(json.dumps(result, indent=2))
    (out / "prompt_baselines.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
