"""What a continual-learning stream adds to its report: the accuracy matrix R (row i: after
training experience i, column j: accuracy on experience j), the stream metrics and the
stream's own plots. Read from ``summary.json``; no model is loaded."""

from __future__ import annotations

from typing import Any

from lmforge.reporting.html import Section, note, numbers, pictures, table
from lmforge.reporting.rundata import RunData

STREAM_METRICS = ("average_accuracy", "acc_triangle", "bwt", "fwt", "forgetting")
"""The stream's headline numbers, in the order the continual docs define them."""


def sections(run: RunData, job: Any) -> list[Section]:
    """The accuracy matrix (with the initial model's row), the stream metrics and plots."""
    summary = run.summary
    names = [str(n) for n in summary.get("experiences") or []]
    rows = summary.get("accuracy_matrix") or []
    if not names or not rows:
        return [Section("Accuracy matrix", note("The stream has no accuracy matrix yet "
                                                "(unfinished run)."))]
    labels = [f"after {i + 1}: {names[i] if i < len(names) else '?'}" for i in range(len(rows))]
    body_rows = [(label, *row) for label, row in zip(labels, rows, strict=True)]
    initial = summary.get("initial_accuracy")
    if isinstance(initial, list) and initial:
        body_rows.insert(0, ("initial model", *initial))
    body = [table(("after / on", *names), body_rows, css="matrix")]
    metrics = numbers({k: summary.get(k) for k in STREAM_METRICS if k in summary})
    if metrics:
        body.append(table(("stream metric", "value"), metrics.items()))
    body.append(pictures(p for p in run.folder.glob("*.png")
                         if p.stem.startswith("accuracy")))
    return [Section("Accuracy matrix", "".join(body))]
