"""What a classification run adds to its report: per-class scores, the confusion matrix as
numbers, and the most confident mistakes. Torch-free (the task section calls it)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lmforge.reporting.html import Section, table


def class_tables(metrics: Mapping[str, Any]) -> list[Section]:
    """Per-class precision / recall / F1 / support, and the confusion matrix counts."""
    out: list[Section] = []
    per_class = metrics.get("per_class")
    if isinstance(per_class, Mapping) and per_class:
        rows = [(name, m.get("precision"), m.get("recall"), m.get("f1"), m.get("support"))
                for name, m in per_class.items() if isinstance(m, Mapping)]
        out.append(Section("Per class", table(("label", "precision", "recall", "f1",
                                               "support"), rows)))
    matrix, labels = metrics.get("confusion_matrix"), metrics.get("labels")
    if isinstance(matrix, list) and isinstance(labels, list) and len(matrix) == len(labels):
        out.append(Section("Confusion matrix (rows: gold, columns: predicted)",
                           table(("gold \\ predicted", *labels),
                                 [(label, *row) for label, row in zip(labels, matrix,
                                                                      strict=True)])))
    return out


def _confidence(row: Mapping[str, Any]) -> float:
    """The score the model gave its own prediction (multi-label: its highest score)."""
    scores, predicted = row.get("scores"), row.get("predicted")
    if not isinstance(scores, Mapping) or not scores:
        return 0.0
    if isinstance(predicted, str) and predicted in scores:
        return float(scores[predicted])
    return max(float(v) for v in scores.values())


def confident_mistakes(rows: list[dict[str, Any]],
                       count: int) -> tuple[str, list[dict[str, Any]]]:
    """The most confident mistakes first, then the most confident right answers."""
    wrong = sorted((r for r in rows if r.get("predicted") != r.get("label")),
                   key=_confidence, reverse=True)
    right = sorted((r for r in rows if r.get("predicted") == r.get("label")),
                   key=_confidence, reverse=True)
    picked = [{**{k: v for k, v in r.items() if k != "scores"},
               "confidence": round(_confidence(r), 4)} for r in (wrong + right)[:count]]
    return (f"The most confident mistakes first ({len(wrong)} of {len(rows)} predictions are "
            "wrong), then the most confident right answers; confidence is the score of the "
            "predicted label."), picked
