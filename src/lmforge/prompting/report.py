"""Metrics and tables of ``lmforge prompt``: accuracy / macro-F1 (via lmforge.evaluation),
the majority-class and best-constant baselines, and a markdown table of the results."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from lmforge.evaluation.classification import classification_metrics


def label_metrics(y_true: Sequence[int] | np.ndarray, probs: np.ndarray,
                  labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of the argmax of (N, C) label probabilities."""
    m = classification_metrics(np.asarray(y_true), probs, list(labels))
    return {"accuracy": m["accuracy"], "macro_f1": m["f1"]["macro"]}


def majority_baseline(train_labels: Sequence[str], y_true: Sequence[int] | np.ndarray,
                      labels: Sequence[str]) -> dict[str, Any]:
    """Always predict the most frequent training label (ties: the first in label order)."""
    counts = Counter(train_labels)
    best = max(labels, key=lambda y: (counts.get(y, 0), -list(labels).index(y)))
    probs = np.zeros((len(y_true), len(labels)))
    probs[:, list(labels).index(best)] = 1.0
    return {"label": best, **label_metrics(y_true, probs, labels)}


def constant_baseline(y_true: Sequence[int] | np.ndarray,
                      labels: Sequence[str]) -> dict[str, Any]:
    """The best constant prediction on the evaluated examples (their most frequent label).

    The level a classifier must beat on *this* sample: a sampled evaluation set can have a
    different majority than the training data (``majority_baseline``).
    """
    y = np.asarray(y_true)
    counts = np.bincount(y, minlength=len(labels))
    best = int(np.argmax(counts))  # ties: the first in label order
    probs = np.zeros((len(y), len(labels)))
    probs[:, best] = 1.0
    return {"label": labels[best], **label_metrics(y, probs, labels)}


def markdown_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """A markdown table; floats in [0, 1] are shown as percentages with one decimal."""
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{100 * v:.1f}" if 0.0 <= v <= 1.0 else f"{v:.3f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)
