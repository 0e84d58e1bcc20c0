"""What a seq2seq (summarization / translation) run is configured with and saves.

Torch-free: the job config (and ``--help``) imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, opt
from lmforge.finetuning.task import TaskConfig, TaskSettings


@dataclass
class GenerationOptions:
    """Decoding options of the generative tasks (saved with the model, used when serving)."""

    max_new_tokens: int = opt(128, "Generation: maximum new tokens.")
    num_beams: int = opt(1, "Generation: beam size (1 = greedy).")

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1 and self.num_beams >= 1,
              "task.max_new_tokens and task.num_beams must be >= 1")


@dataclass
class Seq2SeqOptions(GenerationOptions):
    """The options a user sets for a seq2seq task, declared once."""

    source_column: str = opt("source", "Input text column.")
    target_column: str = opt("target", "Output text column.")
    source_prefix: str = opt("", "Prefix added to every input (e.g. 'summarize: ').")
    max_target_length: int = opt(128, "Maximum target length in tokens.")


@dataclass
class Seq2SeqConfig(Seq2SeqOptions, TaskConfig):
    """``task`` when ``task.name=seq2seq``."""


@dataclass
class Seq2SeqSettings(Seq2SeqOptions, TaskSettings):
    """Columns, lengths and decoding options of a seq2seq model."""
