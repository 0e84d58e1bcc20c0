"""The config of ``lmforge finetune``: its root config and the sections only it reads.

Kept free of torch imports so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmforge.adversarial.settings import (
    ADVERSARIAL_METHODS,
    AUGMENT_METHODS,
    AdversarialConfig,
    AugmentConfig,
)
from lmforge.config import check_choice, opt
from lmforge.finetuning.task import DEFAULT_TASK, TaskConfig, task_config
from lmforge.peft.settings import PeftConfig
from lmforge.settings import (
    LabeledDataConfig,
    PretrainedModelConfig,
    TrackConfig,
    TrainConfig,
)


@dataclass
class FinetuneDataConfig(LabeledDataConfig):
    """Labeled examples, and the augmentation of the training split."""

    max_length: int | None = opt(None, "Tokens per example (longer inputs are cut or "
                                       "windowed); default: the task's own (128; qa 384).")
    augment: str = opt("none", "On-the-fly augmentation of the training split only: none, eda "
                               "(Wei & Zou 2019), char (character noise) or eda+char; knobs in "
                               "aug.*.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("data.augment", self.augment, AUGMENT_METHODS)


@dataclass
class FinetuneTrainConfig(TrainConfig):
    """The training engine for fine-tuning: the engine's settings plus adversarial training."""

    adversarial: str = opt("none", "Adversarial / consistency training: none, fgm (Miyato et al. "
                                   "2017), pgd (Madry et al. 2018), freelb (Zhu et al. 2020) or "
                                   "rdrop (Liang et al. 2021); knobs in adv.*.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("train.adversarial", self.adversarial, ADVERSARIAL_METHODS)



# The train defaults of every run that fine-tunes a pretrained model on labeled data
# (``lmforge finetune`` and each experience of ``lmforge continual``), measured in BENCHMARKS.md
# "Fine-tuning defaults" (issue 15). Fine-tuning conventions (BERT, run_glue.py, the Trainer):
# AdamW beta2 0.999, eps 1e-8; the pretraining defaults of TrainConfig (0.98, 1e-6, RoBERTa)
# suit long runs with large batches. Length grouping: less padding, the same examples per epoch.
FINETUNE_TRAIN_DEFAULTS: dict[str, Any] = {
    "lr": 5e-5, "warmup_ratio": 0.1, "adam_beta2": 0.999, "adam_eps": 1e-8,
    "group_by_length": True,
}


@dataclass
class FinetuneJob:
    """``lmforge finetune``: train a pretrained model on a labeled downstream task."""

    data: FinetuneDataConfig = opt(FinetuneDataConfig(validation_ratio=0.1), "")
    model: PretrainedModelConfig = opt(PretrainedModelConfig(), "")
    task: TaskConfig = opt(task_config(DEFAULT_TASK), "")
    # FINETUNE_TRAIN_DEFAULTS, 3 epochs (BERT's GLUE recipe) and
    # metric_for_best=auto: the task picks (classification: accuracy; others: the loss).
    train: FinetuneTrainConfig = opt(FinetuneTrainConfig(epochs=3.0, metric_for_best="auto",
                                                         **FINETUNE_TRAIN_DEFAULTS), "")
    peft: PeftConfig = opt(PeftConfig(), "")
    adv: AdversarialConfig = opt(AdversarialConfig(), "")
    aug: AugmentConfig = opt(AugmentConfig(), "")
    track: TrackConfig = opt(TrackConfig(), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/finetune-<time>).")

    def __post_init__(self) -> None:
        # The task's own default length (a QA window holds the question and a long stretch
        # of context), resolved here so the saved config says what the run used.
        if self.data.max_length is None:
            self.data.max_length = self.task.default_max_length
        self.task.check_lengths(self.data.max_length)
