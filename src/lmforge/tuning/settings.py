"""The config of ``lmforge tune``: a fine-tuning config plus a ``tune:`` section.

A :class:`TuneJob` is a :class:`~lmforge.finetuning.settings.FinetuneJob` with one more section, so
``lmforge tune -c finetune.yaml -s space.yaml`` reads the same YAML file that
``lmforge finetune`` reads; every trial is that config with the sampled values applied.
Kept free of optuna / torch imports so ``--help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.config import check, check_choice, opt
from lmforge.finetuning.settings import FinetuneJob

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("none", "median", "successive_halving", "hyperband")
FINAL_MODES = ("keep", "retrain", "none")
SEED_MODES = ("fixed", "per_trial")


@dataclass
class TuneConfig:
    """The hyperparameter search (Optuna)."""

    space: str = opt("", "YAML file of the search space: `train.lr: {log_uniform: [1e-5, "
                         "3e-4]}`, `train.batch_size: [16, 32]`, conditional keys with `when:` "
                         "(see docs/tuning.md).")
    objective: list[str] = opt(["eval_accuracy"], "Metric(s) to optimise: an engine evaluation "
                                                  "metric (eval_accuracy, eval_macro_f1, "
                                                  "eval_loss, ...; prunable), a validation report "
                                                  "metric (f1, exact_match, rougeL, ...) or "
                                                  "trainable_parameters / train_seconds. Two or "
                                                  "more: multi-objective with a Pareto front.")
    direction: list[str] = opt([], "maximize / minimize per objective (empty: from the metric's "
                                   "name: loss, perplexity, ece, parameters, seconds minimize).")
    sampler: str = opt("tpe", "tpe (multivariate TPE, Bergstra et al. 2011), random or grid "
                              "(every combination of the listed choices).")
    startup_trials: int = opt(5, "TPE: random trials before the model of good / bad "
                                 "configurations takes over.")
    pruner: str = opt("median", "Stop bad trials early: none, median, successive_halving or "
                                "hyperband (Li et al. 2018).")
    prune_startup_trials: int = opt(3, "Median pruner: finished trials before any is pruned.")
    prune_warmup: int = opt(1, "Median pruner: a trial is never pruned at its first N "
                               "evaluations (global steps when evals_per_epoch=0).")
    evals_per_epoch: int = opt(2, "Evaluations per epoch in every trial, so that intermediate "
                                  "values line up across batch sizes (0: keep train.eval_every "
                                  "and report at the global step).")
    n_trials: int = opt(20, "Trials in the study (finished or pruned, over all runs and "
                            "workers); a resumed study continues up to this number.")
    timeout: float | None = opt(None, "Stop starting new trials after this many seconds (this "
                                      "process).")
    max_train_steps: int | None = opt(None, "Compute budget: stop starting new trials once the "
                                            "study's trials ran this many optimizer steps in "
                                            "total.")
    seed: int = opt(0, "Seed of the sampler (and of the pruner where it is random).")
    seed_mode: str = opt("fixed", "Training seed of each trial: fixed (train.seed for all, so "
                                  "trials differ only by their parameters) or per_trial "
                                  "(train.seed + trial number; carved dev / test splits move "
                                  "with train.seed, so use it only with fixed split files).")
    storage: str | None = opt(None, "Where the study lives (default: study.journal in the run "
                                    "directory). An RDB URL (sqlite:///x.db, postgresql://..., "
                                    "mysql://...) or a journal file path, shared by several "
                                    "`lmforge tune` workers.")
    study_name: str = opt("lmforge", "Study name inside the storage.")
    keep_models: int = opt(1, "Keep model/ of the best N trials only (0: none); checkpoints of "
                              "finished trials are always removed.")
    final: str = opt("keep", "The final model: keep (copy the best trial's run to final/), "
                             "retrain (train best.yaml again into final/) or none; it is "
                             "evaluated on the test split once, when there is one.")
    plots: bool = opt(True, "Write PNGs of the optimisation history, parameter importances and "
                            "intermediate values (matplotlib).")

    def __post_init__(self) -> None:
        check_choice("tune.sampler", self.sampler, SAMPLERS)
        check_choice("tune.pruner", self.pruner, PRUNERS)
        check_choice("tune.final", self.final, FINAL_MODES)
        check_choice("tune.seed_mode", self.seed_mode, SEED_MODES)
        check(len(self.objective) >= 1, "tune.objective needs at least one metric, e.g. "
                                        "tune.objective=eval_accuracy")
        check(len(set(self.objective)) == len(self.objective),
              f"tune.objective lists a metric twice: {self.objective}")
        for direction in self.direction:
            check_choice("tune.direction", direction, ("maximize", "minimize"))
        check(not self.direction or len(self.direction) == len(self.objective),
              f"tune.direction has {len(self.direction)} entries for {len(self.objective)} "
              "objectives; give one per objective or none")
        check(self.n_trials >= 1, "tune.n_trials must be >= 1")
        check(self.startup_trials >= 0 and self.prune_startup_trials >= 0
              and self.prune_warmup >= 0, "tune.startup_trials, tune.prune_startup_trials and "
                                          "tune.prune_warmup must be >= 0")
        check(self.evals_per_epoch >= 0, "tune.evals_per_epoch must be >= 0")
        check(self.timeout is None or self.timeout > 0, "tune.timeout must be > 0 seconds")
        check(self.max_train_steps is None or self.max_train_steps > 0,
              "tune.max_train_steps must be > 0")
        check(self.keep_models >= 0, "tune.keep_models must be >= 0")
        check(bool(self.study_name), "tune.study_name cannot be empty")


@dataclass
class TuneJob(FinetuneJob):
    """``lmforge tune``: search fine-tuning hyperparameters on the validation set (Optuna).

    Takes a fine-tuning config (``-c finetune.yaml``) and a search space (``-s space.yaml``);
    every trial is a normal fine-tuning run under ``OUTPUT_DIR/trials/``. The output directory
    holds the study (resumable: run the same command again), ``best.yaml``, the trials table,
    plots and the final model evaluated once on the test split.
    """

    tune: TuneConfig = opt(TuneConfig(), "")
