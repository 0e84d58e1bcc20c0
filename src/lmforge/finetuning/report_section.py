"""What a fine-tuning run adds to its report: each evaluated split's task pictures and tables.

``lmforge finetune`` (and ``lmforge evaluate`` on a fine-tuned run) leave one ``eval-<split>/``
folder per evaluated split: ``summary.json`` (``headline`` and ``metrics``), the task's
pictures (a classifier's confusion matrix, ROC, PR and reliability diagrams) and
``predictions.jsonl``. This module shows them; the task's own tables and the choice of
examples come from the run's ``task`` section (:meth:`~lmforge.finetuning.task.TaskConfig.
report_tables`, :meth:`~lmforge.finetuning.task.TaskConfig.report_examples`), which has no
torch, so no model and no task class is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lmforge.config import from_dict
from lmforge.errors import ConfigError
from lmforge.finetuning.task import TaskConfig
from lmforge.reporting.html import (
    PICTURE_TYPES,
    Section,
    esc,
    examples_table,
    note,
    pictures,
    read_json,
    read_jsonl,
    table,
)
from lmforge.reporting.rundata import RunData

SPLIT_ORDER = ("validation", "test")
"""Splits shown first, in this order; any other evaluated split follows by name."""


def task_section(config: dict[str, Any]) -> TaskConfig:
    """The run's ``task`` section (its report hooks); the default task's if it cannot load."""
    try:
        return from_dict(TaskConfig, dict(config.get("task") or {}), "task.")
    except ConfigError:  # a config from a newer lmforge: generic tables and examples
        return TaskConfig()


def eval_folders(folder: Path) -> list[Path]:
    """The run's ``eval-<split>/`` folders that hold a report, validation and test first."""
    found = [f for f in folder.glob("eval-*") if (f / "summary.json").is_file()]

    def rank(f: Path) -> tuple[int, str]:
        split = f.name.removeprefix("eval-")
        return (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else len(SPLIT_ORDER), split)

    return sorted(found, key=rank)


def split_section(folder: Path, task: TaskConfig, examples: int) -> list[Section]:
    """The report of one evaluated split: headline, task tables, pictures, examples."""
    split = folder.name.removeprefix("eval-")
    report = read_json(folder / "summary.json")
    headline = report.get("headline") or {}
    metrics = report.get("metrics") or {}
    body = [table(("metric", "value"), headline.items())] if headline else []
    body += [f"<h4>{esc(t.title)}</h4>{t.body}" for t in task.report_tables(metrics)]
    body.append(pictures(p for p in folder.iterdir() if p.suffix.lower() in PICTURE_TYPES))
    if examples > 0:
        rows = read_jsonl(folder / "predictions.jsonl")
        if rows:
            how, picked = task.report_examples(rows, examples)
            body += ["<h4>Example predictions</h4>", note(how), examples_table(picked)]
    return [Section(f"Evaluation: {split}", "".join(body))]


def sections(run: RunData, job: Any) -> list[Section]:
    """Every evaluated split of a fine-tuning run (``job.examples`` examples each)."""
    task = task_section(run.config)
    out: list[Section] = []
    for folder in eval_folders(run.folder):
        out.extend(split_section(folder, task, job.examples))
    if not out:
        out.append(Section("Evaluation", note("No evaluated split (no eval-<split>/ folder).")))
    return out
