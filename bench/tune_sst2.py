"""Hyperparameter search on SST-2 with MiniLM-L6: lmforge tune (TPE + median pruning and TPE
without pruning) against `Trainer.hyperparameter_search(backend="optuna")`, in one run.

Protocol (identical for the three arms):
- train: a seeded sample of ``--max-train`` SST-2 training sentences; tuning dev: a seeded
  ``--dev-ratio`` of the training file carved out *before* sampling (never the official dev);
- the official GLUE dev set (872) is used once, at the end, on lmforge's final model (the
  tuner's "test" split); the tuned dev number is optimistic because trials were selected on it;
- the same 7-key space (lr, epochs, warmup, weight decay, batch size, layer-wise LR decay,
  label smoothing), the same number of trials, multivariate TPE with the same seed and 5
  startup trials, 2 evaluations per epoch; the peer's objective is its evaluation accuracy,
  and we also report the best intermediate value of each peer trial (lmforge keeps the best
  evaluation of a trial, so that is the like-for-like number).
- The peer is configured as a competent user would: dynamic padding, length-grouped batches,
  layer-wise LR decay through a `create_optimizer` override (Trainer has no option for it),
  label smoothing through `label_smoothing_factor`, fp32, AdamW (0.9, 0.98, 1e-6) as lmforge.

Usage (the three arms side by side, one process each, then merged):
  for arm in pruned peer nopruning; do
    .venv/bin/python bench/tune_sst2.py --trials 8 --max-train 400 --arms $arm \
        --name tune_sst2-$arm &
  done; wait
  .venv/bin/python bench/tune_sst2.py --merge tune_sst2-pruned tune_sst2-peer \
      tune_sst2-nopruning --name tune_sst2
Writes bench/results/NAME.json and .md.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "sst2"
SPACE = {
    "train.lr": {"log_uniform": [1.0e-5, 2.0e-4]},
    "train.epochs": {"int": [1, 3]},
    "train.warmup_ratio": {"uniform": [0.0, 0.2]},
    "train.weight_decay": {"uniform": [0.0, 0.1]},
    "train.batch_size": [16, 32],
    "train.layerwise_lr_decay": {"uniform": [0.7, 1.0]},
    "train.label_smoothing": {"uniform": [0.0, 0.2]},
}


def base_config(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The fine-tuning config both lmforge arms start from."""
    return {
        # max_eval_examples: without it max_examples would cap the dev and test splits too
        "data": {"path": str(data_dir), "validation_ratio": args.dev_ratio,
                 "max_examples": args.max_train, "max_eval_examples": 100_000,
                 "max_length": 64},
        "model": {"pretrained": "all-minilm-l6-v2"},
        "task": {"text_column": "sentence", "label_column": "label"},
        "train": {"seed": 42, "precision": "fp32", "group_by_length": True,
                  "num_threads": args.threads, "log_every": 50},
        "track": {"backends": ["jsonl"], "progress": False},
    }


def run_lmforge(name: str, pruner: str, data_dir: Path, out: Path,
                args: argparse.Namespace) -> dict[str, Any]:
    """One lmforge study; returns its numbers."""
    import yaml

    import lmforge

    space_file = out / "space.yaml"
    space_file.write_text(yaml.safe_dump(SPACE))
    t0 = time.perf_counter()
    result = lmforge.tune(base_config(data_dir, args), output_dir=str(out / name),
                          tune={"space": str(space_file), "n_trials": args.trials,
                                "objective": ["eval_accuracy"], "pruner": pruner,
                                "seed": 0, "startup_trials": 5, "evals_per_epoch": 2,
                                # pruning allowed from the first evaluation, as the peer's
                                # MedianPruner(n_warmup_steps=1) on global steps
                                "prune_warmup": 0,
                                "final": "keep" if pruner != "none" else "none",
                                "keep_models": 1})
    wall = time.perf_counter() - t0
    s = result.summary
    trials = json.loads(json.dumps(_trials(Path(s["run_dir"]))))
    return {"arm": name, "wall_seconds": round(wall, 1), "best_dev": s["best"]["values"]
            ["eval_accuracy"], "best_trial": s["best"]["trial"], "best_params": s["best"]
            ["params"], "trials": trials, "states": s["trials"],
            "train_steps": sum(t["steps"] or 0 for t in trials),
            "train_examples": sum((t["steps"] or 0) * t["batch_size"] for t in trials),
            "final": s.get("final"), "run_dir": s["run_dir"]}


def _trials(run_dir: Path) -> list[dict[str, Any]]:
    import csv

    rows = []
    with (run_dir / "trials.csv").open() as handle:
        for row in csv.DictReader(handle):
            rows.append({"trial": int(row["trial"]), "state": row["state"],
                         "value": float(row["eval_accuracy"]) if row["eval_accuracy"] else None,
                         "steps": int(row["steps"]) if row["steps"] else None,
                         "batch_size": int(row["train.batch_size"]),
                         "train_seconds": float(row["train_seconds"] or 0)})
    return sorted(rows, key=lambda r: r["trial"])


def run_peer(data_dir: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`Trainer.hyperparameter_search(backend="optuna")` on the same splits and space."""
    import numpy as np
    import optuna
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )

    from lmforge.config import from_dict
    from lmforge.data.corpus import load_corpus
    from lmforge.engine.loop import parameter_groups
    from lmforge.finetuning.settings import FinetuneJob
    from lmforge.models.build import resolve_checkpoint

    torch.set_num_threads(args.threads)
    job = from_dict(FinetuneJob, base_config(data_dir, args))
    raw = load_corpus(job.data, seed=job.train.seed)  # the very splits lmforge trains on
    path = resolve_checkpoint("all-minilm-l6-v2")
    tokenizer = AutoTokenizer.from_pretrained(path)

    def encode(batch: dict[str, list[Any]]) -> dict[str, Any]:
        enc = tokenizer([str(t) for t in batch["sentence"]], truncation=True, max_length=64)
        enc["labels"] = [int(v) for v in batch["label"]]
        return enc

    train = raw["train"].map(encode, batched=True, remove_columns=raw["train"].column_names)
    dev = raw["validation"].map(encode, batched=True,
                                remove_columns=raw["validation"].column_names)

    class LLRDArguments(TrainingArguments):
        layerwise_lr_decay: float = 1.0

    class LLRDTrainer(Trainer):
        def create_optimizer(self, model: Any = None) -> Any:
            # The same groups as lmforge: lr * decay^(L + 1 - depth), no decay on bias / norms.
            groups = parameter_groups(self.model, self.args.weight_decay,
                                      self.args.learning_rate, self.args.layerwise_lr_decay)
            self.optimizer = torch.optim.AdamW(groups, lr=self.args.learning_rate,
                                               betas=(0.9, 0.98), eps=1e-6)
            return self.optimizer

    def model_init(trial: Any = None) -> Any:
        return AutoModelForSequenceClassification.from_pretrained(path, num_labels=2)

    def hp_space(trial: Any) -> dict[str, Any]:
        epochs = trial.suggest_int("train.epochs", 1, 3)
        return {
            "learning_rate": trial.suggest_float("train.lr", 1e-5, 2e-4, log=True),
            "num_train_epochs": epochs,
            # transformers 5: a float warmup_steps in [0, 1) is a ratio of the run
            "warmup_steps": trial.suggest_float("train.warmup_ratio", 0.0, 0.2),
            "weight_decay": trial.suggest_float("train.weight_decay", 0.0, 0.1),
            "per_device_train_batch_size": trial.suggest_categorical("train.batch_size",
                                                                     [16, 32]),
            "layerwise_lr_decay": trial.suggest_float("train.layerwise_lr_decay", 0.7, 1.0),
            "label_smoothing_factor": trial.suggest_float("train.label_smoothing", 0.0, 0.2),
            "eval_steps": 1.0 / (2 * epochs),  # a ratio of the run: 2 evaluations per epoch
        }

    training_args = LLRDArguments(
        output_dir=str(out / "peer"), eval_strategy="steps", eval_steps=0.5,
        save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True, warmup_steps=0.0,
        per_device_eval_batch_size=64, train_sampling_strategy="group_by_length", seed=42,
        logging_steps=50,
        adam_beta2=0.98, adam_epsilon=1e-6, lr_scheduler_type="linear")

    def metrics(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = LLRDTrainer(model_init=model_init, args=training_args, train_dataset=train,
                          eval_dataset=dev, data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=metrics)
    storage = optuna.storages.InMemoryStorage()
    sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=5, multivariate=True,
                                         group=True, constant_liar=True)
    t0 = time.perf_counter()
    best = trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=lambda m: m["eval_accuracy"], n_trials=args.trials,
        direction="maximize", backend="optuna", sampler=sampler,
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1),
        storage=storage, study_name="peer")
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name="peer", storage=storage)
    trials = []
    for t in study.trials:
        inter = t.intermediate_values
        steps = max(inter) if inter else None
        trials.append({"trial": t.number, "state": t.state.name.lower(),
                       "value": t.value, "best_eval": max(inter.values()) if inter else None,
                       "last_step_reported": steps,
                       "batch_size": t.params.get("train.batch_size")})
    best_eval = max((t["best_eval"] for t in trials if t["best_eval"] is not None),
                    default=math.nan)
    return {"arm": "peer: Trainer.hyperparameter_search (optuna, median pruner)",
            "wall_seconds": round(wall, 1), "best_dev": best.objective,
            "best_dev_best_eval": best_eval, "best_params": best.hyperparameters,
            "trials": trials,
            "states": {s: sum(t["state"] == s for t in trials) for s in
                       ("complete", "pruned", "fail")}}


def render(results: dict[str, Any]) -> str:
    """The markdown table of the JSON."""
    lines = ["| arm | trials (complete / pruned) | best tuning-dev accuracy | train steps | "
             "train examples | wall s |", "|---|---|---:|---:|---:|---:|"]
    for arm in results["arms"]:
        st = arm["states"]
        best = f"{100 * arm['best_dev']:.2f} %"
        if "best_dev_best_eval" in arm:
            best += f" (best eval {100 * arm['best_dev_best_eval']:.2f} %)"
        lines.append(f"| {arm['arm']} | {st.get('complete', 0)} / {st.get('pruned', 0)} | "
                     f"{best} | {arm.get('train_steps', '—')} | "
                     f"{arm.get('train_examples', '—')} | {arm['wall_seconds']} |")
    final = results.get("official_dev")
    if final:
        lines.append("")
        lines.append(f"Official SST-2 dev ({final.get('examples', 400)} sentences, used once on "
                     f"the final model of the pruned study): accuracy "
                     f"{100 * final['accuracy']:.2f} %")
    return "\n".join(lines) + "\n"


def main() -> None:
    """Run the arms and write the results."""
    from bench.machine import machine_info

    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--dev-ratio", type=float, default=0.08)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--arms", default="pruned,peer,nopruning")
    parser.add_argument("--name", default="tune_sst2")
    parser.add_argument("--work", default=None)
    parser.add_argument("--merge", nargs="+", help="merge these results files into --name")
    args = parser.parse_args()
    results_dir = ROOT / "bench" / "results"
    if args.merge:
        parts = [json.loads((results_dir / f"{n}.json").read_text()) for n in args.merge]
        merged = {"commands": [p["command"] for p in parts], "protocol": parts[0]["protocol"],
                  "arms": [a for p in parts for a in p["arms"]],
                  "machines": [p["machine"] for p in parts], "merge_command": " ".join(sys.argv)}
        for part in parts:
            if part.get("official_dev"):
                merged["official_dev"] = part["official_dev"]
            for arm in part["arms"]:
                final = arm.get("final") or {}
                if final.get("test_metrics") and "examples" not in merged.get("official_dev", {}):
                    merged["official_dev"]["examples"] = final.get("test_examples")
        arms = {a["arm"]: a for a in merged["arms"]}
        pruned = next((a for n, a in arms.items() if "median" in n and "lmforge" in n), None)
        full = next((a for n, a in arms.items() if "no pruning" in n), None)
        if pruned and full:
            merged["pruning_vs_none"] = {
                "best_difference_points": round(100 * (pruned["best_dev"] - full["best_dev"]),
                                                2),
                "train_steps_ratio": round(pruned["train_steps"] / full["train_steps"], 3),
                "train_examples_ratio": round(pruned["train_examples"]
                                              / full["train_examples"], 3),
                # trials 0-2 run whole in both arms (the pruner's 3 startup trials)
                "steps_after_pruner_startup": {
                    "pruned": sum(t["steps"] or 0 for t in pruned["trials"] if t["trial"] >= 3),
                    "none": sum(t["steps"] or 0 for t in full["trials"] if t["trial"] >= 3)}}
        (results_dir / f"{args.name}.json").write_text(json.dumps(merged, indent=2, default=str))
        (results_dir / f"{args.name}.md").write_text(render(merged))
        print(render(merged))
        return
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    work = Path(args.work or tempfile.mkdtemp(prefix="lmforge-tune-"))
    data_dir = work / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, target in (("train.tsv", "train.tsv"), ("test.tsv", "dev.tsv")):
        link = data_dir / name
        if not link.exists():
            link.symlink_to(DATA / target)  # official dev as the "test" split, used once
    results: dict[str, Any] = {"command": " ".join(sys.argv), "protocol": {
        "max_train": args.max_train, "dev_ratio": args.dev_ratio, "trials": args.trials,
        "space": SPACE, "sampler": "multivariate TPE, seed 0, 5 startup trials",
        "pruner": "median (3 startup trials, pruning allowed from the first evaluation)",
        "threads": args.threads},
        "machine_before": machine_info(), "arms": []}
    out_json = ROOT / "bench" / "results" / f"{args.name}.json"
    for arm in args.arms.split(","):
        if arm == "pruned":
            results["arms"].append(run_lmforge("lmforge tune (TPE + median pruner)", "median",
                                               data_dir, work, args))
            final = results["arms"][-1]["final"] or {}
            if final.get("test_metrics"):
                results["official_dev"] = {**final["test_metrics"],
                                           "examples": final.get("test_examples")}
        elif arm == "nopruning":
            results["arms"].append(run_lmforge("lmforge tune (TPE, no pruning)", "none",
                                               data_dir, work, args))
        elif arm == "peer":
            results["arms"].append(run_peer(data_dir, work, args))
        out_json.write_text(json.dumps(results, indent=2, default=str))
    results["machine"] = machine_info()
    out_json.write_text(json.dumps(results, indent=2, default=str))
    (ROOT / "bench" / "results" / f"{args.name}.md").write_text(render(results))
    print(render(results))


if __name__ == "__main__":
    main()
