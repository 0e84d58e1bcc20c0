"""What a classification run is configured with (``task.*``) and saves with its model.

Torch-free: the job config (and ``--help``) imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmforge.config import check_choice, opt
from lmforge.finetuning.classification.report_page import class_tables, confident_mistakes
from lmforge.finetuning.task import TaskConfig, TaskSettings
from lmforge.reporting.html import Section


@dataclass
class ClassificationOptions:
    """The options a user sets for text classification, declared once."""

    text_column: str = opt("text", "Column with the input text.")
    text_pair_column: str | None = opt(None, "Second text column for sentence-pair tasks.")
    label_column: str = opt("label", "Column with the label(s).")
    multi_label: bool = opt(False, "Several labels per example (sigmoid, per-label thresholds).")
    label_separator: str = opt(",", "Separator of labels in a multi-label string column.")
    class_weights: str = opt("none", "none, or balanced (N / (C * count_c)) for imbalanced data.")

    def __post_init__(self) -> None:
        check_choice("task.class_weights", self.class_weights, ("none", "balanced"))


@dataclass
class ClassificationConfig(ClassificationOptions, TaskConfig):
    """``task`` when ``task.name=classification``."""

    def sigmoid_outputs(self) -> bool:
        """Multi-label models score each label with its own sigmoid."""
        return self.multi_label

    def report_tables(self, metrics: Mapping[str, Any]) -> list[Section]:
        """Per-class scores and the confusion matrix counts."""
        return class_tables(metrics)

    def report_examples(self, rows: list[dict[str, Any]],
                        count: int) -> tuple[str, list[dict[str, Any]]]:
        """The most confident mistakes first."""
        return confident_mistakes(rows, count)


@dataclass
class ClassificationSettings(ClassificationOptions, TaskSettings):
    """A classifier's labels, columns and decision thresholds."""

    labels: list[str] = opt([], "Label names, in the order of the model's outputs.")
    thresholds: list[float] | None = opt(None, "Multi-label: per-label decision thresholds "
                                               "tuned on the validation set.")
