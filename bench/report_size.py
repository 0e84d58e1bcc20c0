"""Size and time of `lmforge report` on a 10,000-step fine-tuning run.

The run folder is synthetic but shaped like a real one: ``metrics.jsonl`` with a training row
at every step (``train.log_every=1``: loss, learning rate, throughput, epoch) and an
evaluation row every 250 steps (loss, accuracy, macro-F1), the resolved ``config.yaml`` of
``lmforge finetune``, ``summary.json``, ``lineage.json``, and validation and test
``eval-<split>/`` folders with the plots lmforge's own classification report draws
(confusion matrix, ROC, PR, reliability; matplotlib, 872 examples, SST-2 dev's size) and
their ``predictions.jsonl``. Measured: the file's bytes, and the wall time of the command
line (``lmforge report RUN output=FILE``, Python start and imports included) over 3 runs,
plus the page build alone in-process.

Results: bench/results/report_size.json. Usage:
    .venv/bin/python bench/report_size.py
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import machine_info  # noqa: E402

from lmforge.commands.report import build_page  # noqa: E402
from lmforge.config import to_dict  # noqa: E402
from lmforge.evaluation.classification import ClassificationAccumulator  # noqa: E402
from lmforge.evaluation.plots import write_classification_plots  # noqa: E402
from lmforge.finetuning.settings import FinetuneJob  # noqa: E402
from lmforge.reporting.settings import ReportJob  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
STEPS, EVAL_EVERY, EXAMPLES, REPEATS = 10_000, 250, 872, 3
LABELS = ["negative", "positive"]


def _eval_folder(folder: Path, rng: np.random.Generator) -> dict[str, float]:
    folder.mkdir(parents=True)
    labels = rng.integers(0, 2, EXAMPLES)
    logits = rng.normal(0, 1, (EXAMPLES, 2)) + 2.2 * np.eye(2)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    accumulator = ClassificationAccumulator(2)
    accumulator.update(probs, labels)
    metrics = accumulator.result(LABELS, thresholds=0.5)
    y, p = accumulator.arrays()
    write_classification_plots(y, p, LABELS, metrics, folder)
    headline = {"accuracy": float(metrics["accuracy"]), "f1_macro": float(metrics["f1"]["macro"])}
    words = ["the", "film", "was", "a", "story", "really", "good", "bad", "long", "and"]
    with open(folder / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i in range(EXAMPLES):
            text = " ".join(words[int(j)] for j in rng.integers(0, len(words), 18))
            fh.write(json.dumps({"text": text, "label": LABELS[labels[i]],
                                 "predicted": LABELS[int(probs[i].argmax())],
                                 "scores": {n: round(float(v), 6)
                                            for n, v in zip(LABELS, probs[i], strict=True)}})
                     + "\n")
    (folder / "summary.json").write_text(json.dumps(
        {"headline": headline, "metrics": metrics}, default=float), encoding="utf-8")
    return headline


def make_run(folder: Path) -> None:
    """The 10,000-step run folder (see the module docstring)."""
    folder.mkdir(parents=True)
    rng = random.Random(0)
    job = FinetuneJob()
    job.train.max_steps, job.train.log_every = STEPS, 1
    (folder / "config.yaml").write_text(yaml.safe_dump(to_dict(job), sort_keys=False),
                                        encoding="utf-8")
    t0 = 1.8e9
    with open(folder / "metrics.jsonl", "w", encoding="utf-8") as fh:
        for step in range(1, STEPS + 1):
            loss = 0.25 + 0.45 * math.exp(-step / 1500) + rng.gauss(0, 0.05)
            fh.write(json.dumps({"step": step, "train_loss": loss,
                                 "lr": 3e-5 * min(step / 600, (STEPS - step) / (STEPS - 600)),
                                 "tokens_per_s": 5000 + rng.gauss(0, 300),
                                 "epoch": step / 1000, "time": t0 + step * 0.1}) + "\n")
            if step % EVAL_EVERY == 0:
                fh.write(json.dumps({"step": step,
                                     "eval_loss": 0.3 + 0.3 * math.exp(-step / 2000),
                                     "eval_accuracy": 0.92 - 0.3 * math.exp(-step / 1500),
                                     "eval_macro_f1": 0.91 - 0.3 * math.exp(-step / 1500),
                                     "time": t0 + step * 0.1}) + "\n")
    np_rng = np.random.default_rng(0)
    validation = _eval_folder(folder / "eval-validation", np_rng)
    test = _eval_folder(folder / "eval-test", np_rng)
    (folder / "summary.json").write_text(json.dumps({
        "command": "finetune", "run_dir": str(folder), "task": "classification",
        "labels": LABELS, "steps": STEPS, "validation_metrics": validation,
        "test_metrics": test}), encoding="utf-8")
    (folder / "lineage.json").write_text(json.dumps({
        "run_id": "finetune-bench", "command": "finetune", "config_hash": "0" * 64,
        "parents": [], "data": {"data.path": "1" * 64}, "code": {"lmforge": "0.1.0"},
        "packages": {}, "finished": "2026-12-06T00:00:00"}), encoding="utf-8")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run, out = Path(tmp) / "finetune-10k", Path(tmp) / "report.html"
        make_run(run)
        lmforge = Path(sys.executable).parent / "lmforge"
        cli_seconds = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            subprocess.run([str(lmforge), "report", str(run), f"output={out}"], check=True,
                           capture_output=True)
            cli_seconds.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        page = build_page([run], ReportJob())
        build_seconds = time.perf_counter() - t0
        size = out.stat().st_size
        drawn = [len(points.split()) for points in re.findall(r'<polyline points="([^"]*)"', page)]
        pictures = sorted(run.glob("eval-*/*.png"))
        metrics_bytes = (run / "metrics.jsonl").stat().st_size
        result: dict[str, Any] = {
            "steps": STEPS, "eval_every": EVAL_EVERY, "examples_per_split": EXAMPLES,
            "metrics_jsonl_bytes": metrics_bytes,
            "max_points_per_curve": ReportJob().max_points,
            "charts": page.count("<svg class=\"chart\""),
            "curves": len(drawn), "points_drawn": sum(drawn),
            "max_points_drawn_per_curve": max(drawn),
            "pictures": len(pictures),
            "picture_bytes": sum(p.stat().st_size for p in pictures),
            "report_bytes": size, "report_mib": round(size / 2**20, 3),
            "under_2_mb": size < 2_000_000,
            "cli_seconds": [round(s, 3) for s in cli_seconds],
            "cli_seconds_median": round(statistics.median(cli_seconds), 3),
            "build_seconds": round(build_seconds, 3),
            "under_3_s": statistics.median(cli_seconds) < 3.0,
            "command": "python bench/report_size.py",
            "created": time.strftime("%Y-%m-%d %H:%M"),
            "machine": machine_info(),
        }
    out_file = ROOT / "bench" / "results" / "report_size.json"
    out_file.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=2))


if __name__ == "__main__":
    main()
