"""What a chat SFT run is configured with (``task.*``) and saves with its model.

Torch-free: the job config (and ``--help``) imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import opt
from lmforge.finetuning.seq2seq.settings import GenerationOptions
from lmforge.finetuning.task import TaskConfig, TaskSettings


@dataclass
class SftOptions(GenerationOptions):
    """The options a user sets for chat SFT (causal LM), declared once."""

    messages_column: str = opt("messages", "Column with a list of {role, content} turns.")
    prompt_column: str = opt("prompt", "Prompt column (when there is no messages column).")
    response_column: str = opt("response", "Response column.")
    train_on_prompt: bool = opt(False, "Also compute the loss on prompt tokens.")


@dataclass
class SftConfig(SftOptions, TaskConfig):
    """``task`` when ``task.name=sft``."""


@dataclass
class SftSettings(SftOptions, TaskSettings):
    """Columns, lengths and decoding options of a chat model."""

    tokenizer_size: int = opt(0, "Tokenizer size at training time (the embeddings grow to it).")
