"""What an extractive QA run is configured with (``task.*``) and saves with its model.

Torch-free: the job config (and ``--help``) imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from lmforge.config import check, opt
from lmforge.errors import ConfigError
from lmforge.finetuning.qa.report_page import confident_wrong_answers
from lmforge.finetuning.task import TaskConfig, TaskSettings


@dataclass
class QaOptions:
    """The options a user sets for extractive QA (SQuAD format), declared once."""

    text_column: str = opt("text", "Column of a plain text line (unused by QA inputs).")
    question_column: str = opt("question", "Question column.")
    context_column: str = opt("context", "Context (passage) column.")
    answers_column: str = opt("answers", "Answers column {text: [...], answer_start: [...]}.")
    id_column: str = opt("id", "Example id column.")
    doc_stride: int = opt(128, "Overlap in tokens between windows of a long context.")
    n_best: int = opt(20, "Start / end candidates tried per window.")
    max_answer_length: int = opt(30, "Longest answer span in tokens.")
    allow_unanswerable: bool = opt(False, "SQuAD 2.0 style: predict no answer when the null "
                                          "score wins.")

    def __post_init__(self) -> None:
        check(self.doc_stride >= 0 and self.n_best >= 1 and self.max_answer_length >= 1,
              "task.doc_stride must be >= 0, task.n_best and task.max_answer_length >= 1")


@dataclass
class QaConfig(QaOptions, TaskConfig):
    """``task`` when ``task.name=qa``."""

    # run_qa.py's defaults: 384-token windows that overlap by 128.
    default_max_length: ClassVar[int] = 384

    def check_lengths(self, max_length: int) -> None:
        """A window must hold more than its overlap with the next one."""
        if self.doc_stride >= max_length:
            raise ConfigError(f"task.doc_stride ({self.doc_stride}) must be below "
                              f"data.max_length ({max_length}); lower task.doc_stride or "
                              "raise data.max_length")

    def report_examples(self, rows: list[dict[str, Any]],
                        count: int) -> tuple[str, list[dict[str, Any]]]:
        """The most confident wrong answers first."""
        return confident_wrong_answers(rows, count)


@dataclass
class QaSettings(QaOptions, TaskSettings):
    """Columns and windowing / span-decoding settings of an extractive QA model."""

    train_answer_check: dict | None = opt(None, "Answer-alignment check of the training split.")
