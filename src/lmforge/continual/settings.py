"""The config of ``lmforge continual``: a stream of experiences, a scenario and a strategy.

Kept free of torch imports so ``lmforge continual --help`` stays fast. A stream file::

    scenario: task                 # task | domain | class
    strategy: {name: replay, buffer_size: 10%}
    model: {pretrained: all-minilm-l6-v2}
    experiences:
      - {name: sst2, task_id: sst2, data: {path: ../shared/data/sst2},
         task: {text_column: sentence}}
      - {name: trec, task_id: trec, data: {path: ../shared/data/trec},
         task: {text_column: question}}
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.finetuning.settings import FINETUNE_TRAIN_DEFAULTS
from lmforge.finetuning.task import DEFAULT_TASK, TaskConfig, task_config
from lmforge.peft.settings import PeftConfig
from lmforge.settings import LabeledDataConfig, PretrainedModelConfig, TrackConfig, TrainConfig

SCENARIOS = ("task", "domain", "class")
STRATEGY_NAMES = ("naive", "joint", "replay", "ewc", "lwf", "agem", "lora")
BUFFER_POLICIES = ("per_experience", "reservoir")
REPLAY_MODES = ("concat", "batch")
EVAL_SPLITS = ("validation", "test")


@dataclass
class ExperienceConfig:
    """One experience of the stream: a labeled dataset and its task settings."""

    name: str = opt("", "Short name of the experience (folder names, plots, metrics).")
    task_id: str | None = opt(None, "Task identity, known at test time (scenario=task needs "
                                    "one per experience; it picks the experience's head).")
    labels: list[str] = opt([], "Keep only rows with these labels (e.g. split one dataset "
                                "into class-incremental experiences); empty: all rows.")
    data: LabeledDataConfig = opt(LabeledDataConfig(validation_ratio=0.1), "")
    task: TaskConfig = opt(task_config(DEFAULT_TASK), "")

    def __post_init__(self) -> None:
        check(bool(self.name), "every experience needs a name (experiences[i].name=...)")


@dataclass
class StrategyConfig:
    """How the model learns the stream without forgetting (see docs/continual.md)."""

    name: str = opt("naive", "naive (sequential fine-tuning, lower bound), joint (all "
                             "experiences at once, upper bound), replay (rehearsal buffer), "
                             "ewc (online EWC, Kirkpatrick et al. 2017 / Schwarz et al. 2018), "
                             "lwf (Learning without Forgetting, Li & Hoiem 2016), agem "
                             "(Chaudhry et al. 2019) or lora (a LoRA adapter and head per "
                             "experience on a frozen backbone; scenario=task).")
    buffer_size: str = opt("0", "replay / agem: memory size, N examples or P% of the "
                                "stream's training examples (e.g. 200 or 10%).")
    buffer_policy: str = opt("per_experience", "replay / agem: per_experience (an equal "
                                               "share per past experience) or reservoir "
                                               "(uniform over everything seen).")
    replay_mode: str = opt("concat", "replay: concat (the memory rows join the experience's "
                                     "training rows, shuffled together: a batch is ~M / (N + M) "
                                     "memory and the new rows keep their full gradient; classic "
                                     "rehearsal, e.g. iCaRL) or batch (replay_batch_size memory "
                                     "rows appended to every batch: Chaudhry et al. 2019's ER, "
                                     "Avalanche's ReplayPlugin; at the default size half of each "
                                     "step's gradient is memory).")
    replay_batch_size: int = opt(0, "replay_mode=batch: memory rows appended to each batch "
                                    "(0: train.batch_size).")
    ewc_lambda: float | None = opt(None, "ewc: weight lambda of the quadratic penalty; unset: "
                                         "calibrated after each experience from the Fisher (see "
                                         "ewc_auto_penalty).")
    ewc_auto_penalty: float = opt(3.0, "ewc with ewc_lambda unset: lambda is set so that "
                                        "moving the weights as far as the experience just "
                                        "learned moved them would cost this much (in nats, the "
                                        "loss's unit): lambda = 2 c / sum_i F_i (theta_i - "
                                        "theta_start,i)^2.")
    ewc_decay: float = opt(0.9, "ewc: decay gamma of the running Fisher (online EWC; 1.0 "
                                "sums the Fishers of all experiences).")
    fisher_batches: int = opt(32, "ewc: training batches of an experience whose squared "
                                  "gradients estimate its Fisher diagonal.")
    lwf_alpha: float = opt(1.0, "lwf: weight of the distillation term.")
    lwf_temperature: float = opt(2.0, "lwf: softmax temperature T of the distillation.")
    agem_batch_size: int = opt(0, "agem: memory examples per reference gradient "
                                  "(0: train.batch_size).")
    lora_lr: float = opt(2.0e-3, "lora: learning rate of each experience's adapter and head "
                                 "(0: train.lr). Adapters start at zero and train few weights, "
                                 "so they need a larger step than full fine-tuning's train.lr "
                                 "(PEFT recipes: 5e-4 to 2e-3 for LoRA; 2e-3 is the rate of "
                                 "BENCHMARKS.md's LoRA row on SST-2).")

    def __post_init__(self) -> None:
        check_choice("strategy.name", self.name, STRATEGY_NAMES)
        check_choice("strategy.buffer_policy", self.buffer_policy, BUFFER_POLICIES)
        buffer_spec(self.buffer_size)  # validates the form
        check(self.replay_batch_size >= 0 and self.agem_batch_size >= 0,
              "strategy.replay_batch_size and strategy.agem_batch_size must be >= 0")
        check(self.ewc_lambda is None or self.ewc_lambda >= 0,
              "strategy.ewc_lambda must be >= 0 (or unset: calibrated)")
        check(self.ewc_auto_penalty > 0, "strategy.ewc_auto_penalty must be > 0")
        check(self.lora_lr >= 0, "strategy.lora_lr must be >= 0 (0: train.lr)")
        check_choice("strategy.replay_mode", self.replay_mode, REPLAY_MODES)
        check(0.0 <= self.ewc_decay <= 1.0, "strategy.ewc_decay must be in [0, 1]")
        check(self.fisher_batches >= 1, "strategy.fisher_batches must be >= 1")
        check(self.lwf_alpha >= 0 and self.lwf_temperature > 0,
              "strategy.lwf_alpha must be >= 0 and strategy.lwf_temperature > 0")
        if self.name in ("replay", "agem"):
            check(buffer_spec(self.buffer_size) != (0, False),
                  f"strategy.name={self.name} needs a memory: set strategy.buffer_size=N or "
                  "P% (e.g. 10%)")


def buffer_spec(text: str) -> tuple[float, bool]:
    """``"10%"`` -> (10.0, True); ``"200"`` -> (200, False).

    Raises:
        ConfigError: Neither a whole number nor a percentage in [0, 100].
    """
    value = str(text).strip()
    percent = value.endswith("%")
    try:
        number = float(value[:-1]) if percent else int(value)
    except ValueError:
        number = -1
    check(number >= 0 and (not percent or number <= 100),
          f"strategy.buffer_size={text!r} is not valid; give examples (e.g. 200) or a "
          "percentage of the stream's training examples (e.g. 10%)")
    return float(number), percent


@dataclass
class ContinualJob:
    """``lmforge continual``: learn a stream of experiences in order and measure forgetting."""

    experiences: list[ExperienceConfig] = opt([], "The stream, in training order: each item "
                                                  "has name, task_id, labels, data.* and task.* "
                                                  "(as in lmforge finetune).")
    scenario: str = opt("task", "task (task id known at test time: a head per experience), "
                                "domain (same labels, new input domain) or class (new labels; "
                                "one growing head).")
    strategy: StrategyConfig = opt(StrategyConfig(), "")
    model: PretrainedModelConfig = opt(PretrainedModelConfig(), "")
    # Each experience is a fine-tuning: finetune's measured defaults, shared (not copied).
    # Differences, on purpose: 1 epoch per experience (the continual-learning convention,
    # e.g. Avalanche's examples and the CL literature: a stream's cost is the sum of its
    # experiences), and no in-training evaluation (no metric_for_best), since the stream
    # evaluates every experience after each one instead.
    train: TrainConfig = opt(TrainConfig(epochs=1.0, **FINETUNE_TRAIN_DEFAULTS), "")
    peft: PeftConfig = opt(PeftConfig(), "")
    track: TrackConfig = opt(TrackConfig(), "")
    eval_split: str = opt("validation", "Split of each experience evaluated after every "
                                        "experience: validation or test.")
    max_train_examples: int | None = opt(None, "Cap every experience's training rows (a "
                                               "seeded sample; quick runs, benchmarks).")
    max_eval_examples: int | None = opt(None, "Cap every experience's evaluation rows.")
    eval_batch_size: int = opt(64, "Examples per batch when evaluating the stream.")
    keep_checkpoints: bool = opt(False, "Keep each finished experience's resumable "
                                        "checkpoints (its model/ folder is always kept).")
    output_dir: str | None = opt(None, "Run directory (default: runs/continual-<time>).")

    def __post_init__(self) -> None:
        check_choice("scenario", self.scenario, SCENARIOS)
        check_choice("eval_split", self.eval_split, EVAL_SPLITS)
        check(len(self.experiences) >= 2, "a stream needs at least two experiences; list them "
                                          "under experiences: in the stream YAML")
        names = [e.name for e in self.experiences]
        dup = sorted({n for n in names if names.count(n) > 1})
        check(not dup, f"experience names must be unique; {dup} appear twice")
        if self.scenario == "task":
            missing = [e.name for e in self.experiences if not e.task_id]
            check(not missing, f"scenario=task needs a task_id on every experience "
                               f"({missing[:3]} have none); set experiences[i].task_id, or "
                               "use scenario=domain or class")
            ids = [e.task_id for e in self.experiences]
            dup = sorted({i for i in ids if ids.count(i) > 1})
            check(not dup, f"scenario=task needs a distinct task_id per experience; {dup} "
                           "repeat")
        if self.strategy.name == "lora":
            check(self.scenario == "task", "strategy.name=lora keeps an adapter per task and "
                                           "picks it by task id: it needs scenario=task")
            check(self.peft.method in ("none", "lora"), "strategy.name=lora sets its own "
                                                        "adapters; drop peft.method")
        check(self.max_train_examples is None or self.max_train_examples > 0,
              "max_train_examples must be > 0")
        check(self.max_eval_examples is None or self.max_eval_examples > 0,
              "max_eval_examples must be > 0")
        check(self.eval_batch_size >= 1, "eval_batch_size must be >= 1")
