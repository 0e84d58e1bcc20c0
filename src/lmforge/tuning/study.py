"""Optuna pieces of ``lmforge tune``: storage, sampler, pruner, objectives, the pruning hook.

Optuna is imported inside the functions, so ``lmforge --help`` does not pay for it.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.config import _suggest
from lmforge.engine.hooks import StepHook
from lmforge.errors import ConfigError
from lmforge.finetuning.task import TaskConfig, get_task
from lmforge.tuning.settings import TuneConfig

if TYPE_CHECKING:  # pragma: no cover
    from lmforge.engine.loop import Engine

log = logging.getLogger(__name__)

# Numbers of a trial's summary that can be objectives besides the metrics.
SUMMARY_OBJECTIVES = ("trainable_parameters", "parameters", "train_seconds", "steps")
_MINIMIZE_WORDS = ("loss", "perplexity", "ece", "error", "parameters", "seconds", "latency",
                   "steps")


def optuna_module() -> Any:
    """Import optuna with an error naming the package to install."""
    try:
        import optuna
    except ImportError:  # pragma: no cover - optuna is a dependency
        raise ConfigError("lmforge tune needs optuna: pip install optuna") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


@dataclass
class Objective:
    """One thing a study optimises, and where its value comes from."""

    name: str
    direction: str  # "maximize" or "minimize"

    @property
    def is_eval_metric(self) -> bool:
        """An engine evaluation metric (reported at every evaluation, prunable)."""
        return self.name.startswith("eval_")

    def value(self, summary: dict[str, Any]) -> float:
        """This objective's value in a finished trial's summary."""
        if self.is_eval_metric:
            value = summary.get("best_metric", {}).get(self.name)
        elif self.name in SUMMARY_OBJECTIVES:
            value = summary.get(self.name)
        else:
            metrics = summary.get("validation_metrics") or {}
            if self.name not in metrics:
                raise ConfigError(f"tune.objective={self.name!r} is not in the validation "
                                  f"report {sorted(metrics)}; pick one of those")
            value = metrics[self.name]
        if value is None:
            raise ConfigError(f"tune.objective={self.name!r}: the trial reported no value "
                              "(is there a validation split? set data.validation_ratio > 0)")
        return float(value)


def direction_of(metric: str) -> str:
    """``minimize`` for losses, perplexity, ECE, sizes and times; ``maximize`` otherwise."""
    return "minimize" if any(word in metric for word in _MINIMIZE_WORDS) else "maximize"


def objectives(cfg: TuneConfig, task: TaskConfig) -> list[Objective]:
    """The study's objectives, checked against what the task reports.

    Args:
        cfg: The ``tune`` section (objective names, directions, pruner).
        task: The tuned job's ``task`` section (its name and options).

    Raises:
        ConfigError: An ``eval_*`` objective the task's evaluation does not report, or a
            pruner with several objectives or a non-``eval_*`` one.
    """
    directions = cfg.direction or [direction_of(name) for name in cfg.objective]
    # The engine's in-loop evaluation metrics (the task's reducer): the ones that can be
    # pruned on and pick each trial's best checkpoint. The task declares them itself.
    known = get_task(task.name).tuning_objectives(task)
    out = []
    for name, direction in zip(cfg.objective, directions, strict=True):
        if name.startswith("eval_") and name not in known:
            raise ConfigError(f"tune.objective={name!r} is not an evaluation metric of task "
                              f"{task.name!r}{_suggest(name, known)}; choose one of {list(known)} "
                              "or a validation report metric")
        out.append(Objective(name, direction))
    if len(out) > 1 and cfg.pruner != "none":
        raise ConfigError("pruning needs a single objective (Optuna cannot prune "
                          "multi-objective studies); set tune.pruner=none")
    if cfg.pruner != "none" and not out[0].is_eval_metric:
        raise ConfigError(f"pruning needs an evaluation metric (eval_*) as objective, not "
                          f"{out[0].name!r}; set tune.pruner=none or pick one of {list(known)}")
    return out


def open_storage(cfg: TuneConfig, run_dir: Path) -> Any:
    """The study's storage: a journal file in the run directory, another file, or an RDB URL.

    RDB storages get a heartbeat, so a trial whose worker died is marked failed and retried by
    the next worker; journal files do the same for dead workers on this machine
    (:func:`recover_dead_trials`).
    """
    optuna = optuna_module()
    target = cfg.storage or str(run_dir / "study.journal")
    if "://" in target:
        from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna
                warnings.simplefilter("ignore")
                return RDBStorage(target, heartbeat_interval=30, grace_period=120,
                                  heartbeat_stale_trial_callback=(
                                      RetryHeartbeatStaleTrialCallback(max_retry=1)))
        except ImportError as err:
            raise ConfigError(f"cannot open tune.storage={target!r}: the database driver is "
                              f"missing ({err.name or err}); pip install it") from None
        except Exception as err:  # noqa: BLE001 - sqlalchemy raises many kinds
            reason = str(err).splitlines()[0][:160]
            raise ConfigError(f"cannot open tune.storage={target!r} ({reason}); check the URL, "
                              "the server and the credentials") from None
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = Path(target)
    if path.is_dir():
        raise ConfigError(f"tune.storage={target!r} is a folder; give a journal file path or "
                          "an RDB URL")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend)
    except OSError as err:
        raise ConfigError(f"cannot open tune.storage={target!r} ({err.strerror or err}); give "
                          "a writable journal file path") from None


def make_sampler(cfg: TuneConfig, grid: dict[str, list[Any]] | None, offset: int = 0) -> Any:
    """TPE (multivariate, grouped for conditional keys), random or grid, seeded.

    ``offset`` (the trials a continued study already holds) moves the seed on: a sampler
    seeded as in the first run would draw the first run's random points again.
    """
    optuna = optuna_module()
    seed = cfg.seed + offset
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "grid":
        class AskTellGrid(optuna.samplers.GridSampler):
            # GridSampler stops the study from inside tell() when the grid is used up, which
            # only works under study.optimize(); lmforge's ask / tell loop checks
            # is_exhausted() before each trial instead.
            def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
                return None

        return AskTellGrid(grid, seed=seed)

    with warnings.catch_warnings():  # multivariate / group are "experimental" in Optuna
        warnings.simplefilter("ignore")
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.startup_trials,
                                          multivariate=True, group=True, constant_liar=True)


def make_pruner(cfg: TuneConfig) -> Any:
    """The pruner named by ``tune.pruner``; resources are evaluations (see evals_per_epoch)."""
    optuna = optuna_module()
    if cfg.pruner == "median":
        # Reported steps are evaluation numbers 1, 2, ... (evals_per_epoch > 0) and Optuna
        # never prunes at step < n_warmup_steps: +1 protects the first prune_warmup evaluations.
        warmup = cfg.prune_warmup + 1 if cfg.evals_per_epoch > 0 else cfg.prune_warmup
        return optuna.pruners.MedianPruner(n_startup_trials=cfg.prune_startup_trials,
                                           n_warmup_steps=warmup)
    if cfg.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=3)
    if cfg.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, reduction_factor=3)
    return optuna.pruners.NopPruner()


def worker_id() -> str:
    """``host:pid`` of this process (recorded on each trial it runs)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


RESUMED_ATTRS = ("run_dir", "seed")
"""User attributes a retried trial takes over from the one it retries: the same run folder
(so it resumes from that run's latest checkpoint) and the same training seed."""


def retry_attrs(trial: Any) -> dict[str, Any]:
    """User attributes of the trial that retries ``trial`` (see :data:`RESUMED_ATTRS`)."""
    return {"retry_of": trial.number,
            **{k: trial.user_attrs[k] for k in RESUMED_ATTRS if k in trial.user_attrs}}


def retried_trial(trial: Any) -> int | None:
    """The number of the trial that ``trial`` (a frozen trial) retries, or None.

    lmforge's own retries say it in ``retry_of``; a retry by Optuna's heartbeat callback (RDB
    storages) in its ``retry_history`` (its user attributes, ``run_dir`` and ``seed`` among
    them, are copies of the stale trial's).
    """
    history = trial.system_attrs.get("retry_history")
    if history:
        return int(history[-1])
    number = trial.user_attrs.get("retry_of")
    return None if number is None else int(number)


def retried_numbers(trials: list[Any]) -> set[int]:
    """Numbers of the trials that another trial retries (and resumes): not results."""
    return {n for n in map(retried_trial, trials) if n is not None}


def recover_dead_trials(study: Any) -> int:
    """Mark RUNNING trials of dead workers on this host as failed and queue them again.

    A killed ``lmforge tune`` leaves its current trial RUNNING in a journal file; the next run
    queues a trial with its parameters, run folder and seed, which resumes the killed run from
    its latest checkpoint, so neither the trial nor its work is lost (nor counted twice
    against ``tune.n_trials``). Returns how many were requeued.
    """
    optuna = optuna_module()
    host = socket.gethostname()
    requeued = 0
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = str(trial.user_attrs.get("worker", ""))
        name, _, pid = worker.rpartition(":")
        if name != host or not pid.isdigit() or _alive(int(pid)) and int(pid) != os.getpid():
            continue
        # Not a result of its parameters: excluded from n_trials, and its parameters retried.
        study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        study.enqueue_trial(trial.params, user_attrs=retry_attrs(trial), skip_if_exists=False)
        log.warning("trial %d was left running by a dead worker (%s); queued again", trial.number,
                    worker)
        requeued += 1
    return requeued


class PruningHook(StepHook):
    """Reports the objective at every evaluation and stops the run when Optuna prunes it.

    With ``evals_per_epoch`` = k > 0 the run evaluates every ``steps_per_epoch // k`` steps,
    and the value is reported at step = the evaluation's number (1, 2, ...), so trials with
    different batch sizes report at the same fractions of an epoch. With k = 0 the run keeps
    ``train.eval_every`` and reports at the global step.

    A run resumed from a checkpoint (the retry of a killed trial) first reports again what
    the killed trial had reported up to that checkpoint (``previous``), then goes on counting.

    Args:
        trial: The Optuna trial.
        metric: The engine metric to report (``eval_accuracy``, ...).
        evals_per_epoch: See above.
        previous: Intermediate values of the trial this one resumes ({step: value}).
    """

    def __init__(self, trial: Any, metric: str, evals_per_epoch: int,
                 previous: dict[int, float] | None = None) -> None:
        self.trial, self.metric, self.evals_per_epoch = trial, metric, evals_per_epoch
        self.previous = dict(previous or {})
        self.pruned = False
        self.evaluations = 0

    def on_train_begin(self, engine: Engine) -> None:
        """Set the evaluation cadence from the run's real steps per epoch; on a resumed run,
        count the evaluations before its checkpoint and report their values again."""
        if self.evals_per_epoch > 0:
            engine.cfg.eval_every = max(1, engine.steps_per_epoch // self.evals_per_epoch)
        done = engine.state.global_step
        self.evaluations = done // max(1, engine.cfg.eval_every or engine.steps_per_epoch)
        last = self.evaluations if self.evals_per_epoch > 0 else done
        for step, value in sorted(self.previous.items()):
            if step <= last:
                self.trial.report(float(value), step)

    def on_evaluate(self, engine: Engine, metrics: dict[str, float]) -> None:
        """Report the objective; on a prune decision stop cleanly (the run still saves)."""
        if self.metric not in metrics:
            return
        self.evaluations += 1
        step = self.evaluations if self.evals_per_epoch > 0 else engine.state.global_step
        self.trial.report(float(metrics[self.metric]), step)
        if self.trial.should_prune():
            self.pruned = True
            engine.should_stop = True
