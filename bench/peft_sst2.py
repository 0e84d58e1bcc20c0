"""SST-2 with MiniLM-L6: full fine-tuning vs LoRA vs Houlsby adapters vs BitFit vs prompt tuning.

Every method sees the same train subset, dev set, epochs, batch size, warmup, weight decay and
seed; only the learning rate differs, set per method to the range its paper / common
practice uses (PEFT methods train few parameters and want a larger step). Each run goes
through `lmforge finetune` in its own process under `bench/_maxrss.py`, which records the
peak resident memory.

Recorded per method: dev accuracy, trainable parameters and share, training and wall time,
peak RSS, and the size in bytes of `run/model/` (what has to be stored or shipped per task;
the tokenizer files are included for every method).

Usage: .venv/bin/python bench/peft_sst2.py [--max-train 4000] [--epochs 1] [--max-dev N]
       [--methods full,lora,houlsby,bitfit,prompt]
Writes bench/results/peft_sst2.json and bench/results/peft_sst2.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sst2"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
       "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
# Shared settings (as bench/finetune_sst2.py); the LR is per method below.
HP = {"batch_size": 32, "warmup": 0.1, "wd": 0.01, "seed": 42, "max_length": 128}
METHODS: dict[str, dict[str, object]] = {
    "full": {"method": "none", "lr": 5e-5, "extra": []},
    "lora": {"method": "lora", "lr": 5e-4, "extra": ["peft.r=8", "peft.alpha=16"]},
    "houlsby": {"method": "houlsby", "lr": 1e-3, "extra": ["peft.reduction_factor=16"]},
    "bitfit": {"method": "bitfit", "lr": 1e-3, "extra": []},
    "prompt": {"method": "prompt", "lr": 3e-2, "extra": ["peft.num_virtual_tokens=20"]},
}


def _write_subset(src: Path, dst: Path, rows: int | None) -> int:
    lines = src.read_text().splitlines()
    if rows:
        lines = lines[: rows + 1]  # header + rows
    dst.write_text("\n".join(lines) + "\n")
    return len(lines) - 1


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_method(name: str, data: Path, work: Path, epochs: float) -> dict[str, object]:
    """One `lmforge finetune` run; returns its metrics, cost and artifact size."""
    spec = METHODS[name]
    out = work / name
    report = work / f"{name}-rss.json"
    cmd = [sys.executable, str(ROOT / "bench" / "_maxrss.py"), str(report),
           sys.executable, "-m", "lmforge", "finetune", f"data.path={data}",
           "task.text_column=sentence", "model.pretrained=all-minilm-l6-v2",
           f"peft.method={spec['method']}", *spec["extra"], f"train.lr={spec['lr']}",
           f"train.epochs={epochs}", f"train.batch_size={HP['batch_size']}",
           f"train.warmup_ratio={HP['warmup']}", f"train.weight_decay={HP['wd']}",
           f"train.seed={HP['seed']}", f"data.max_length={HP['max_length']}",
           "train.group_by_length=true", "train.adam_beta2=0.999", "train.adam_eps=1e-8",
           "train.eval_every=0", "train.keep_last=1", "train.metric_for_best=eval_accuracy",
           "train.greater_is_better=true", "track.backends=jsonl", "track.progress=false",
           f"--output-dir={out}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).splitlines()[-15:])
        raise SystemExit(f"{name} failed (exit {done.returncode}):\n{tail}")
    rss = json.loads(report.read_text())
    summary = rss["summary"]
    return {
        "peft_method": spec["method"], "lr": spec["lr"],
        "dev_accuracy": summary["validation_metrics"]["accuracy"],
        "dev_macro_f1": summary["validation_metrics"].get("f1_macro"),
        "trainable_parameters": summary["trainable_parameters"],
        "trainable_share": summary["trainable_share"],
        "train_seconds": summary["train_seconds"], "wall_seconds": round(wall, 2),
        "peak_rss_mib": round(rss["maxrss_mib"], 1),
        "model_dir_bytes": _folder_bytes(out / "model"),
    }


def markdown(result: dict[str, object]) -> str:
    """A table of the runs, one row per method."""
    lines = [f"# SST-2, MiniLM-L6: PEFT methods (train {result['train_examples']} examples, "
             f"dev {result['dev_examples']}, {result['epochs']} epoch(s), seed {HP['seed']})",
             "",
             "| method | lr | dev acc | trainable | share | train s | wall s | peak RSS MiB "
             "| model/ size |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in result["runs"].items():  # type: ignore[union-attr]
        lines.append(f"| {name} | {r['lr']:g} | {r['dev_accuracy']:.4f} | "
                     f"{r['trainable_parameters']:,} | {100 * r['trainable_share']:.2f}% | "
                     f"{r['train_seconds']:.1f} | {r['wall_seconds']:.1f} | "
                     f"{r['peak_rss_mib']:.0f} | {r['model_dir_bytes'] / 2**20:.2f} MiB |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-train", type=int, default=4000, help="train rows (0: all)")
    parser.add_argument("--max-dev", type=int, default=None, help="dev rows (default: all)")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--lr", nargs="*", default=[], metavar="METHOD=LR",
                        help="override a method's learning rate, e.g. lora=2e-3")
    parser.add_argument("--tag", default="", help="suffix of the result file names")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = parser.parse_args()
    for item in args.lr:
        method, _, value = item.partition("=")
        if method not in METHODS or not value:
            sys.exit(f"bad --lr {item!r}; use METHOD=LR with METHOD in {list(METHODS)}")
        METHODS[method]["lr"] = float(value)
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        sys.exit(f"unknown methods {unknown}; choose from {list(METHODS)}")
    work = Path(tempfile.mkdtemp(prefix="lmforge-peft-sst2-"))
    try:
        data = work / "sst2"
        data.mkdir()
        n_train = _write_subset(DATA / "train.tsv", data / "train.tsv", args.max_train or None)
        n_dev = _write_subset(DATA / "dev.tsv", data / "dev.tsv", args.max_dev)
        result: dict[str, object] = {"train_examples": n_train, "dev_examples": n_dev,
                                     "epochs": args.epochs, "hyperparameters": HP, "runs": {}}
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            result["runs"][name] = run_method(name, data, work, args.epochs)  # type: ignore[index]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"peft_sst2{'-' + args.tag if args.tag else ''}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
