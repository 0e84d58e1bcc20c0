"""The config of ``lmforge finetune``: its root config and the sections only it reads.

Kept free of torch imports so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.adversarial.settings import (
    ADVERSARIAL_METHODS,
    AUGMENT_METHODS,
    AdversarialConfig,
    AugmentConfig,
)
from lmforge.config import check, check_choice, opt
from lmforge.finetuning.task import DEFAULT_TASK, TASKS, task_names_help
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


@dataclass
class TaskConfig:
    """The downstream task and where its inputs and labels are."""

    name: str = opt(DEFAULT_TASK, task_names_help())
    text_column: str = opt("text", "Column with the input text.")
    text_pair_column: str | None = opt(None, "Second text column for sentence-pair tasks.")
    label_column: str = opt("label", "Column with the label(s).")
    multi_label: bool = opt(False, "Several labels per example (sigmoid, per-label thresholds).")
    label_separator: str = opt(",", "Separator of labels in a multi-label string column.")
    class_weights: str = opt("none", "none, or balanced (N / (C * count_c)) for imbalanced data.")
    # token classification (NER)
    tokens_column: str = opt("tokens", "NER: column with the list of words.")
    tags_column: str = opt("tags", "NER: column with one tag per word.")
    scheme: str = opt("BIO", "NER: tagging scheme of the data, BIO or BIOES.")
    label_all_subwords: bool = opt(False, "NER: label every sub-word (default: first only).")
    # extractive QA (SQuAD format)
    question_column: str = opt("question", "QA: question column.")
    context_column: str = opt("context", "QA: context (passage) column.")
    answers_column: str = opt("answers", "QA: answers column {text: [...], answer_start: [...]}.")
    id_column: str = opt("id", "QA: example id column.")
    doc_stride: int = opt(128, "QA: overlap in tokens between windows of a long context.")
    n_best: int = opt(20, "QA: start / end candidates tried per window.")
    max_answer_length: int = opt(30, "QA: longest answer span in tokens.")
    allow_unanswerable: bool = opt(False, "QA: SQuAD 2.0 style, predict no answer when the null "
                                          "score wins.")
    # seq2seq (summarization / translation) and causal SFT
    source_column: str = opt("source", "Seq2seq: input text column.")
    target_column: str = opt("target", "Seq2seq: output text column.")
    source_prefix: str = opt("", "Seq2seq: prefix added to every input (e.g. 'summarize: ').")
    max_target_length: int = opt(128, "Seq2seq: maximum target length in tokens.")
    max_new_tokens: int = opt(128, "Generation: maximum new tokens.")
    num_beams: int = opt(1, "Generation: beam size (1 = greedy).")
    messages_column: str = opt("messages", "SFT: column with a list of {role, content} turns.")
    prompt_column: str = opt("prompt", "SFT: prompt column (when there is no messages column).")
    response_column: str = opt("response", "SFT: response column.")
    train_on_prompt: bool = opt(False, "SFT: also compute the loss on prompt tokens.")

    def __post_init__(self) -> None:
        check_choice("task.name", self.name, list(TASKS))
        check_choice("task.scheme", self.scheme, ("BIO", "BIOES"))
        check(self.doc_stride >= 0 and self.n_best >= 1 and self.max_answer_length >= 1,
              "task.doc_stride must be >= 0, task.n_best and task.max_answer_length >= 1")
        check(self.max_new_tokens >= 1 and self.num_beams >= 1,
              "task.max_new_tokens and task.num_beams must be >= 1")
        check_choice("task.class_weights", self.class_weights, ("none", "balanced"))


@dataclass
class FinetuneJob:
    """``lmforge finetune``: train a pretrained model on a labeled downstream task."""

    data: FinetuneDataConfig = opt(FinetuneDataConfig(validation_ratio=0.1), "")
    model: PretrainedModelConfig = opt(PretrainedModelConfig(), "")
    task: TaskConfig = opt(TaskConfig(), "")
    # Fine-tuning conventions (BERT, run_glue.py, the Trainer): AdamW beta2 0.999, eps 1e-8;
    # the pretraining defaults (0.98, 1e-6, RoBERTa) suit long runs with large batches.
    # Length grouping: less padding, the same examples per epoch.
    # metric_for_best=auto: the task picks (classification: accuracy; others: the loss).
    train: FinetuneTrainConfig = opt(FinetuneTrainConfig(lr=5e-5, epochs=3.0, warmup_ratio=0.1,
                                                         adam_beta2=0.999, adam_eps=1e-8,
                                                         group_by_length=True,
                                                         metric_for_best="auto"), "")
    peft: PeftConfig = opt(PeftConfig(), "")
    adv: AdversarialConfig = opt(AdversarialConfig(), "")
    aug: AugmentConfig = opt(AugmentConfig(), "")
    track: TrackConfig = opt(TrackConfig(), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/finetune-<time>).")
