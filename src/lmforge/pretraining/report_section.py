"""What a pretraining run adds to its report: its objective and size, the held-out metrics
before and after training, and what ``lmforge evaluate`` measured on it later.

Read from ``summary.json`` (``initial_eval`` and ``final_eval``, written by ``lmforge
pretrain``) and from each ``eval-<split>/summary.json`` that ``lmforge evaluate RUN`` leaves
in the run folder, so an evaluation made after training shows in the run's own report.
"""

from __future__ import annotations

from typing import Any

from lmforge.reporting.html import Section, kv_table, note, numbers, read_json, table
from lmforge.reporting.rundata import RunData

SETUP_KEYS = ("objective", "whole_word_mask", "model_source", "new_head", "parameters",
              "trainable_parameters", "precision", "processes", "train_examples",
              "tokens_per_example", "steps", "tokens_seen", "tokens_per_second", "best_step")
"""The facts of the run listed first, in this order."""

EVALUATE_SKIP = ("examples",)
"""Numbers of an ``lmforge evaluate`` summary that are not metrics (shown as their own
column instead)."""


def sections(run: RunData, job: Any) -> list[Section]:
    """The run's setup, its held-out metrics before / after, and later evaluations."""
    summary = run.summary
    setup = {key: summary[key] for key in SETUP_KEYS if key in summary}
    out = [Section("Pretraining", kv_table(setup) if setup
                   else note("No pretraining summary in summary.json."))]
    before = numbers(summary.get("initial_eval") or {})
    after = numbers(summary.get("final_eval") or {})
    if before or after:
        keys = [*after, *(k for k in before if k not in after)]
        out.append(Section("Held-out metrics before and after training",
                           table(("metric", "before", "after"),
                                 [(k, before.get(k, ""), after.get(k, "")) for k in keys])))
    out.extend(evaluations(run))
    return out


def evaluations(run: RunData) -> list[Section]:
    """One row per ``eval-<split>/`` folder that ``lmforge evaluate`` wrote."""
    found = []
    for folder in sorted(run.folder.glob("eval-*")):
        report = read_json(folder / "summary.json")
        if report.get("command") == "evaluate":
            found.append((folder.name.removeprefix("eval-"), report))
    if not found:
        return []
    metrics: list[str] = []
    for _, report in found:
        metrics += [k for k in numbers(report) if k not in metrics and k not in EVALUATE_SKIP]
    rows = [(split, report.get("examples", ""), report.get("precision", ""),
             *[report.get(k, "") for k in metrics]) for split, report in found]
    return [Section("Evaluations (lmforge evaluate)",
                    table(("split", "examples", "precision", *metrics), rows))]
