"""Evaluation reports for fine-tuned classifiers: summary.json, predictions.jsonl, PNG plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from lmforge.evaluation.classification import ClassificationAccumulator
from lmforge.evaluation.plots import write_classification_plots
from lmforge.finetuning.classification.data import predict_probabilities
from lmforge.runs import write_json

HEADLINE = ("accuracy", "subset_accuracy", "f1", "roc_auc", "pr_auc", "ece")


def _headline(metrics: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key in HEADLINE:
        value = metrics.get(key)
        if isinstance(value, dict):
            for sub in ("macro", "micro", "weighted"):
                if isinstance(value.get(sub), (int, float)):
                    out[f"{key}_{sub}"] = float(value[sub])
        elif isinstance(value, (int, float)):
            out[key] = float(value)
    return out


def evaluate_classifier(model: Any, dataset: datasets.Dataset, raw: datasets.Dataset | None,
                        collator: Any, settings: Any, out_dir: Path, accelerator: Any,
                        batch_size: int = 64) -> dict[str, Any]:
    """Score ``dataset``, write the report into ``out_dir`` and return its metrics.

    Predictions are streamed to ``predictions.jsonl`` batch by batch; only the (N, C)
    probabilities are kept for the ranking metrics (ROC / PR need every score).

    Returns:
        ``{"headline": {...flat numbers...}, "metrics": {...full...}, "plots": {...}}``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    label_names = settings.labels
    multi = settings.multi_label
    thresholds = np.asarray(settings.thresholds) if settings.thresholds is not None else 0.5
    accumulator = ClassificationAccumulator(len(label_names), multi_label=multi)
    text_column = settings.text_column
    texts = raw[text_column] if raw is not None and text_column in raw.column_names else None
    index = 0
    with open(out_dir / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for probs, labels in predict_probabilities(model, dataset, collator,
                                                   batch_size=batch_size, multi_label=multi,
                                                   device=accelerator.device,
                                                   autocast=accelerator.autocast):
            accumulator.update(probs, labels)
            for row, p in enumerate(probs):
                record: dict[str, Any] = {}
                if texts is not None:
                    record["text"] = texts[index]
                if multi:
                    record["label"] = [label_names[c] for c in np.flatnonzero(labels[row])]
                    record["predicted"] = [label_names[c] for c in
                                           np.flatnonzero(p >= thresholds)]
                else:
                    record["label"] = label_names[int(labels[row])]
                    record["predicted"] = label_names[int(p.argmax())]
                record["scores"] = {label_names[c]: round(float(v), 6) for c, v in enumerate(p)}
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
                index += 1
    metrics = accumulator.result(label_names, thresholds=thresholds)
    plots: dict[str, str] = {}
    if not multi:

        y, probs = accumulator.arrays()
        plots = write_classification_plots(y, probs, label_names, metrics, out_dir)
    report = {"headline": _headline(metrics), "metrics": metrics, "plots": plots,
              "predictions": str(out_dir / "predictions.jsonl")}
    write_json(out_dir / "summary.json", report)
    report["table"] = format_table(report, label_names)
    return report


def format_table(report: dict[str, Any], label_names: list[str]) -> str:
    """A plain-text metrics table: headline numbers, then per-class P / R / F1 / support."""
    metrics = report["metrics"]
    lines = [f"{key:>18}: {value:.4f}" for key, value in report["headline"].items()]
    per_class = metrics.get("per_class") or metrics.get("per_label") or {}
    if per_class:
        lines.append(f"{'class':>18}  precision  recall     f1  support")
        for name in label_names:
            row = per_class.get(name, {})
            lines.append(f"{name[:18]:>18}  {row.get('precision', 0):9.4f}  "
                         f"{row.get('recall', 0):6.4f}  {row.get('f1', 0):6.4f}  "
                         f"{int(row.get('support', 0)):7d}")
    return "\n".join(lines)
