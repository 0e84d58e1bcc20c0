"""What a token-classification (NER) run is configured with (``task.*``) and saves.

Torch-free: the job config (and ``--help``) imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmforge.config import check_choice, opt
from lmforge.finetuning.task import TaskConfig, TaskSettings
from lmforge.finetuning.token_classification.report_page import entity_table, worst_sentences
from lmforge.reporting.html import Section


@dataclass
class TokenClassificationOptions:
    """The options a user sets for token classification, declared once."""

    text_column: str = opt("text", "Column of a plain text line (lmforge predict splits it "
                                   "into words).")
    tokens_column: str = opt("tokens", "Column with the list of words.")
    tags_column: str = opt("tags", "Column with one tag per word.")
    scheme: str = opt("BIO", "Tagging scheme of the data, BIO or BIOES.")
    label_all_subwords: bool = opt(False, "Label every sub-word (default: the first only).")

    def __post_init__(self) -> None:
        check_choice("task.scheme", self.scheme, ("BIO", "BIOES"))


@dataclass
class TokenClassificationConfig(TokenClassificationOptions, TaskConfig):
    """``task`` when ``task.name=token_classification``."""

    def report_tables(self, metrics: Mapping[str, Any]) -> list[Section]:
        """The entity table: scores per entity type."""
        return entity_table(metrics)

    def report_examples(self, rows: list[dict[str, Any]],
                        count: int) -> tuple[str, list[dict[str, Any]]]:
        """The sentences with the most wrongly tagged words first."""
        return worst_sentences(rows, count)


@dataclass
class TokenClassificationSettings(TokenClassificationOptions, TaskSettings):
    """A tagger's tag names, scheme and columns."""

    labels: list[str] = opt([], "Tag names, in the order of the model's outputs.")
