"""EDA augmentation in low resource: SST-2 with N training sentences, plain vs `data.augment`.

MiniLM-L6, the first N sentences of the shared SST-2 train split (no class balancing), the
full dev split, several seeds; mean and standard deviation of dev accuracy. No external peer:
the comparison is the same fine-tuning without augmentation (Longpre et al. 2020 found EDA
rarely helps pretrained transformers; this measures it).

Usage: .venv/bin/python bench/augment_lowres.py --sizes 200 1000 --seeds 1 2 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from machine import machine_info  # noqa: E402

METHODS = {"plain": {}, "eda": {"data": {"augment": "eda"}, "aug": {"alpha": 0.1, "n_aug": 4}}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--name", default="augment_lowres")
    args = parser.parse_args()
    import lmforge

    machine = machine_info()
    src = ROOT.parent / "shared" / "data" / "sst2"
    if not src.is_dir():
        sys.exit(f"skipped: {src} not found")
    work = Path(tempfile.mkdtemp(prefix="lmforge-aug-"))
    results: dict = {"benchmark": "augment_lowres", "epochs": args.epochs,
                     "command": " ".join(["bench/augment_lowres.py", *sys.argv[1:]]),
                     "methods": {k: v for k, v in METHODS.items() if k in args.methods},
                     "runs": [], "machine": machine}
    for size in args.sizes:
        data = work / f"n{size}"
        data.mkdir()
        lines = (src / "train.tsv").read_text(encoding="utf-8").splitlines()[: size + 1]
        (data / "train.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        (data / "dev.tsv").write_text((src / "dev.tsv").read_text(encoding="utf-8"))
        for seed in args.seeds:
            for name in args.methods:
                sections = METHODS[name]
                result = lmforge.finetune(
                    {"data": {"path": str(data), **sections.get("data", {})},
                     "task": {"text_column": "sentence"},
                     "model": {"pretrained": "all-minilm-l6-v2"}},
                    train={"epochs": args.epochs, "batch_size": 16, "lr": 1e-4,
                           "warmup_ratio": 0.1, "seed": seed,
                           "eval_every": 0},
                    aug=sections.get("aug", {}), track={"backends": ["jsonl"],
                                                        "progress": False},
                    output_dir=str(work / f"n{size}-s{seed}-{name}"))
                acc = result.summary["validation_metrics"]["accuracy"]
                # The resumable checkpoints (model + optimizer) are not needed once it is done.
                shutil.rmtree(work / f"n{size}-s{seed}-{name}" / "checkpoints",
                              ignore_errors=True)
                results["runs"].append({"train_sentences": size, "seed": seed,
                                        "method": name, "dev_accuracy": acc,
                                        "train_seconds": result.summary["train_seconds"]})
                print(f"n={size} seed={seed} {name}: {acc:.4f}", flush=True)
    table = ["| train sentences | method | dev accuracy (mean ± std) | seeds |",
             "|---|---|---|---|"]
    summary = {}
    for size in args.sizes:
        for name in args.methods:
            accs = [r["dev_accuracy"] for r in results["runs"]
                    if r["train_sentences"] == size and r["method"] == name]
            mean, std = statistics.mean(accs), statistics.stdev(accs) if len(accs) > 1 else 0.0
            summary[f"{size}/{name}"] = {"mean": mean, "std": std, "n": len(accs)}
            table.append(f"| {size} | {name} | {100 * mean:.1f} ± {100 * std:.1f} | {len(accs)} |")
    results["summary"] = summary
    out = ROOT / "bench" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / f"{args.name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))


if __name__ == "__main__":
    main()
