"""The data side of pretraining: the objective's data preparation, the splits, the collator.

``lmforge pretrain`` trains with them and ``lmforge evaluate`` scores a pretrained run's
held-out split with the very same preparation (same seed, same split).
"""

from __future__ import annotations

from typing import Any

from accelerate import Accelerator

from lmforge.data.collators import ClmCollator, MlmCollator
from lmforge.data.corpus import load_corpus
from lmforge.data.lm import prepare_lm_dataset
from lmforge.errors import ConfigError
from lmforge.pretraining.settings import PretrainJob
from lmforge.settings import DataConfig


def data_objective(job: PretrainJob) -> tuple[str, str]:
    """(objective for data preparation, task for the model) of a pretraining config."""
    obj = job.objective
    if obj.name == "clm":
        if obj.sentence_task != "none":
            raise ConfigError("objective.sentence_task (nsp/sop) needs objective.name=mlm")
        return "clm", "clm"
    if obj.sentence_task != "none":
        return obj.sentence_task, "mlm+sentence"
    return "mlm", "mlm"


def prepare_splits(data: DataConfig, tokenizer: Any, objective_data: str, whole_word: bool,
                   segmenter: str | None, seed: int, accelerator: Accelerator,
                   splits: tuple[str, ...] = ("train", "validation")) -> dict[str, Any]:
    """Load the corpus and tokenize the requested splits (rank 0 first, others hit the cache)."""
    with accelerator.main_process_first():
        corpus = load_corpus(data, seed=seed)
        out = {}
        for name in splits:
            if name not in corpus:
                continue
            out[name] = prepare_lm_dataset(
                corpus[name], tokenizer, objective=objective_data, text_column=data.text_column,
                max_length=data.max_length, packing=data.packing, whole_word_mask=whole_word,
                chinese_word_segmenter=segmenter, cache_dir=data.cache_dir,
                num_proc=data.num_proc, seed=seed, split_name=name)
    return out


def lm_collator(job_objective: str, tokenizer: Any, mlm_probability: float,
                whole_word: bool) -> Any:
    """The batch maker of an LM objective: causal (shifted inside the model) or masked."""
    if job_objective == "clm":
        return ClmCollator(tokenizer)
    return MlmCollator(tokenizer, mlm_probability=mlm_probability, whole_word_mask=whole_word)
