"""The config of ``lmforge pretrain``: the objective section and the root config."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.settings import DataConfig, ModelConfig, TrackConfig, TrainConfig

OBJECTIVES = ("mlm", "clm")
SENTENCE_TASKS = ("none", "nsp", "sop")


@dataclass
class ObjectiveConfig:
    """The self-supervised pretraining objective."""

    name: str = opt("mlm", "mlm (masked LM, BERT) or clm (causal LM, GPT).")
    mlm_probability: float = opt(0.15, "Share of tokens (or words) selected for masking.")
    whole_word_mask: bool = opt(False, "Mask all pieces of a selected word together.")
    chinese_word_segmenter: str | None = opt(None, "Word segmenter for Chinese whole-word "
                                                   "masking: jieba.")
    sentence_task: str = opt("none", "Extra sentence-pair task for mlm: none, nsp (next "
                                     "sentence, BERT) or sop (sentence order, ALBERT).")

    def __post_init__(self) -> None:
        check_choice("objective.name", self.name, OBJECTIVES)
        check_choice("objective.sentence_task", self.sentence_task, SENTENCE_TASKS)
        check(0.0 < self.mlm_probability < 1.0, "objective.mlm_probability must be in (0, 1)")
        if self.chinese_word_segmenter is not None:
            check_choice("objective.chinese_word_segmenter", self.chinese_word_segmenter,
                         ("jieba",))


@dataclass
class PretrainJob:
    """``lmforge pretrain``: self-supervised pretraining, from scratch or continued."""

    data: DataConfig = opt(DataConfig(), "")
    model: ModelConfig = opt(ModelConfig(), "")
    objective: ObjectiveConfig = opt(ObjectiveConfig(), "")
    train: TrainConfig = opt(TrainConfig(), "")
    track: TrackConfig = opt(TrackConfig(), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/pretrain-<time>).")
