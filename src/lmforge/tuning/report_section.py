"""What a hyperparameter study adds to its report: the trials table (best first), the best
trial, and the study's plots (optimisation history, parameter importances, intermediate
values or the Pareto front). Read from ``trials.csv``, ``summary.json`` and ``plots/``."""

from __future__ import annotations

import csv
from typing import Any

from lmforge.reporting.html import Section, kv_table, note, pictures, table
from lmforge.reporting.rundata import RunData

MAX_TRIALS = 50
"""Trials listed in the report (the table is sorted best first; the rest is in trials.csv)."""


def _cell(value: str) -> Any:
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        return value


def sections(run: RunData, job: Any) -> list[Section]:
    """The best trial, the trials table and the study's plots."""
    out: list[Section] = []
    best = run.summary.get("best")
    if isinstance(best, dict):
        flat = {"trial": best.get("trial"), **{f"value: {k}": v for k, v in
                                              (best.get("values") or {}).items()},
                **{f"param: {k}": v for k, v in (best.get("params") or {}).items()}}
        out.append(Section("Best trial", kv_table(flat)))
    path = run.folder / "trials.csv"
    if path.is_file():
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        columns = [c for c in (rows[0] if rows else {}) if c != "run_dir"]
        shown = [[_cell(r.get(c) or "") for c in columns] for r in rows[:MAX_TRIALS]]
        more = note(f"{len(rows) - MAX_TRIALS} more trials in trials.csv.") \
            if len(rows) > MAX_TRIALS else ""
        out.append(Section(f"Trials ({len(rows)}, best first)",
                           table(columns, shown) + more))
    plots = pictures((run.folder / "plots").glob("*.png")) if (run.folder / "plots").is_dir() \
        else ""
    out.append(Section("Study plots (history, parameter importance)",
                       plots or note("No study plots (tune.plots=false or too few trials).")))
    return out
