"""What a seq2seq (summarization / translation) run is configured with and saves.

Torch-free: the job config (and ``--help``) imports it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.config import check, opt
from lmforge.finetuning.task import TaskConfig, TaskSettings


@dataclass
class GenerationOptions:
    """Decoding options of the generative tasks (saved with the model, used when serving)."""

    max_new_tokens: int = opt(128, "Generation: maximum new tokens.")
    num_beams: int = opt(1, "Generation: beam size (1 = greedy).")
    do_sample: bool = opt(False, "Generation: sample instead of greedy / beam search.")
    temperature: float = opt(1.0, "Generation: softmax temperature when sampling (> 0).")
    top_p: float = opt(1.0, "Generation: nucleus sampling mass in (0, 1] when sampling.")
    top_k: int = opt(50, "Generation: sample among the k most likely tokens (0: all).")
    repetition_penalty: float = opt(1.0, "Generation: > 1 discourages repeated tokens "
                                         "(Keskar et al. 2019); 1 disables it.")
    stop: list[str] = opt([], "Generation: extra stop strings (a chat model's end-of-turn "
                              "marker always stops).")
    baseline_eval: bool = opt(True, "Also evaluate the model before tuning (validation loss, "
                                    "perplexity and sample generations, in "
                                    "eval-validation-before/), to compare with after.")

    def __post_init__(self) -> None:
        check(self.max_new_tokens >= 1 and self.num_beams >= 1,
              "task.max_new_tokens and task.num_beams must be >= 1")
        check(self.temperature > 0, "task.temperature must be > 0 (do_sample=false is greedy)")
        check(0 < self.top_p <= 1, "task.top_p must be in (0, 1]")
        check(self.top_k >= 0, "task.top_k must be >= 0 (0 disables it)")
        check(self.repetition_penalty > 0, "task.repetition_penalty must be > 0 (1 disables it)")
        check(all(isinstance(s, str) and s for s in self.stop),
              "task.stop must be a list of non-empty strings")

    def decoding_options(self) -> dict[str, Any]:
        """The decoding fields, as keyword arguments of ``GenerationSettings``."""
        return {"max_new_tokens": self.max_new_tokens, "num_beams": self.num_beams,
                "do_sample": self.do_sample, "temperature": self.temperature,
                "top_p": self.top_p, "top_k": self.top_k,
                "repetition_penalty": self.repetition_penalty, "stop": tuple(self.stop)}


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
