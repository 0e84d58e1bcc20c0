"""Numbers derived from raw results (ratios, savings, unit changes), computed, not typed.

BENCHMARKS.md quotes only numbers found in a raw file (bench/check_numbers.py checks its
tables). A saving such as "38 % less training time" is not itself in peft_sst2.json; this script
computes such numbers from the raw files and writes them, each with its formula, to
bench/results/derived.json. Re-run it after re-running a benchmark it reads.

Usage: .venv/bin/python bench/derived.py   (seconds; no model is run)
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def peft(raw: dict) -> dict:
    """Per method: training-time saving vs full fine-tuning, model/ size in MiB, size ratio."""
    runs = raw["runs"]
    full = runs["full"]
    out: dict = {"formula": {"train_time_saving": "1 - train_seconds / full train_seconds",
                             "model_dir_mib": "model_dir_bytes / 2**20",
                             "full_size_ratio": "full model_dir_bytes / model_dir_bytes"},
                 "methods": {}}
    for name, run in runs.items():
        out["methods"][name] = {
            "train_time_saving": 1 - run["train_seconds"] / full["train_seconds"],
            "model_dir_mib": run["model_dir_bytes"] / 2**20,
            "full_size_ratio": full["model_dir_bytes"] / run["model_dir_bytes"],
        }
    return out


def main() -> None:
    """Write bench/results/derived.json from the raw files it reads."""
    sources = {"peft_sst2": "peft_sst2.json"}
    makers = {"peft_sst2": peft}
    result: dict = {"command": "python bench/derived.py", "sources": sources}
    for key, name in sources.items():
        result[key] = makers[key](json.loads((RESULTS / name).read_text()))
    (RESULTS / "derived.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
