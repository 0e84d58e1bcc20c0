"""``lmforge tune``: a hyperparameter study over ``lmforge finetune`` runs (Optuna).

Each trial samples the search space (:mod:`lmforge.tuning.space`), fine-tunes into
``RUN/trials/trial-NNNN`` (a normal run directory, without a test report), and reports its
objective at every evaluation so the pruner can stop it. The study lives in a storage that
another ``lmforge tune`` process (or this one, run again) can open and continue.
"""

from __future__ import annotations

import gc
import logging
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

from lmforge.commands.context import open_run
from lmforge.commands.runner import run_command
from lmforge.config import from_dict, merge_dicts, to_dict
from lmforge.errors import ConfigError, DataError, NonFiniteLossError
from lmforge.evaluation.settings import EvaluateJob
from lmforge.finetuning.settings import FinetuneJob
from lmforge.lineage import canonical_hash, read_lineage
from lmforge.runs import save_run_config, write_json
from lmforge.tuning import report
from lmforge.tuning.settings import TuneJob
from lmforge.tuning.space import Param, check_against, grid_space, load_space, nested, sample
from lmforge.tuning.study import (
    Objective,
    PruningHook,
    make_pruner,
    make_sampler,
    objectives,
    open_storage,
    optuna_module,
    recover_dead_trials,
    retried_numbers,
    retried_trial,
    retry_attrs,
    worker_id,
)

log = logging.getLogger(__name__)
TRIALS_DIR = "trials"
FINAL_DIR = "final"


def base_config(job: TuneJob) -> dict[str, Any]:
    """The fine-tuning config every trial starts from (the job without tune / output_dir)."""
    data = to_dict(job)
    data.pop("tune")
    data.pop("output_dir")
    return data


def trial_job(base: dict[str, Any], values: dict[str, Any], objs: list[Objective],
              seed: int, trial_dir: Path) -> FinetuneJob:
    """The fine-tuning config of one trial: base + sampled values + what the tuner sets."""
    data = merge_dicts(base, nested(values))
    data["train"] = {**data["train"], "seed": seed}
    if objs[0].is_eval_metric:  # the objective also picks the checkpoint the trial keeps
        data["train"]["metric_for_best"] = objs[0].name
        data["train"]["greater_is_better"] = objs[0].direction == "maximize"
    data["output_dir"] = str(trial_dir)
    return from_dict(FinetuneJob, data)


def _finished(study: Any) -> list[Any]:
    """The trials that count against ``tune.n_trials``: complete, pruned, and failed by their
    parameters (a NaN loss); not an interrupted trial, nor one that another trial retries."""
    optuna = optuna_module()
    done = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED,
            optuna.trial.TrialState.FAIL)
    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    return [t for t in trials if t.state in done and not t.user_attrs.get("interrupted")
            and t.number not in retried]


def _steps_used(study: Any) -> int:
    return sum(int(t.user_attrs.get("steps", 0)) for t in study.get_trials(deepcopy=False))


def _open_study(job: TuneJob, run_dir: Path, params: list[Param], objs: list[Objective]) -> Any:
    optuna = optuna_module()
    grid = grid_space(params) if job.tune.sampler == "grid" else None
    storage = open_storage(job.tune, run_dir)
    try:
        study = optuna.create_study(storage=storage, study_name=job.tune.study_name,
                                    sampler=make_sampler(job.tune, grid),
                                    pruner=make_pruner(job.tune), load_if_exists=True,
                                    directions=[o.direction for o in objs])
    except ValueError as err:  # e.g. the stored study has other directions
        raise ConfigError(f"cannot continue study {job.tune.study_name!r}: {err}; use another "
                          "--output-dir or tune.study_name") from None
    # A study continues only with the config and space it was started with.
    fingerprint = canonical_hash({"base": base_config(job),
                                  "space": [vars(p) for p in params],
                                  "objective": [vars(o) for o in objs]})
    stored = study.user_attrs.get("fingerprint")
    if stored is None:
        study.set_user_attr("fingerprint", fingerprint)
        study.set_user_attr("objectives", [o.name for o in objs])
    elif stored != fingerprint:
        raise ConfigError(f"study {job.tune.study_name!r} in {job.tune.storage or run_dir} was "
                          "started with another fine-tuning config, search space or objective; "
                          "use a new --output-dir (or tune.study_name) for a new study")
    existing = len(study.get_trials(deepcopy=False))
    if existing:  # a continued study: the seeded sampler must not replay the first run's draws
        study.sampler = make_sampler(job.tune, grid, offset=existing)
    return study


def _should_stop(job: TuneJob, study: Any, started: float) -> str | None:
    cfg = job.tune
    if len(_finished(study)) >= cfg.n_trials:
        return f"n_trials={cfg.n_trials} reached"
    if cfg.timeout is not None and time.monotonic() - started >= cfg.timeout:
        return f"timeout of {cfg.timeout:g} s reached"
    if cfg.max_train_steps is not None and _steps_used(study) >= cfg.max_train_steps:
        return f"compute budget of {cfg.max_train_steps} train steps reached"
    if cfg.sampler == "grid" and study.sampler.is_exhausted(study):
        return "grid exhausted"
    return None


def _run_trial(job: TuneJob, study: Any, trial: Any, params: list[Param],
               objs: list[Objective], run_dir: Path) -> None:
    optuna = optuna_module()
    values = sample(params, trial)
    # The retry of an interrupted trial carries its run folder and seed (retry_attrs) and
    # resumes that run from its latest checkpoint.
    retry_of = retried_trial(study.get_trials(deepcopy=False)[trial.number])
    trial_dir = Path(trial.user_attrs.get(
        "run_dir", run_dir / TRIALS_DIR / f"trial-{trial.number:04d}"))
    seed = int(trial.user_attrs.get(
        "seed", job.train.seed + (trial.number if job.tune.seed_mode == "per_trial" else 0)))
    resume = retry_of is not None and trial_dir.is_dir()
    trial.set_user_attr("seed", seed)
    trial.set_user_attr("worker", worker_id())
    trial.set_user_attr("run_dir", str(trial_dir))
    ft_job = trial_job(base_config(job), values, objs, seed, trial_dir)
    hooks: list[Any] = []
    hook = None
    if len(objs) == 1 and objs[0].is_eval_metric:  # intermediate values for pruning and plots
        previous = study.get_trials(deepcopy=False)[retry_of].intermediate_values if resume \
            else None
        hook = PruningHook(trial, objs[0].name, job.tune.evals_per_epoch, previous)
        hooks.append(hook)
    log.info("trial %d%s: %s", trial.number,
             f" (resumes trial {retry_of} in {trial_dir})" if resume else "",
             ", ".join(f"{k}={v}" for k, v in values.items()))
    try:
        summary = run_command("finetune", ft_job, resume=resume, hooks=hooks,
                              report_splits=("validation",))
    except NonFiniteLossError as err:  # a legitimate outcome of a bad learning rate
        trial.set_user_attr("error", str(err))
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        log.warning("trial %d failed: %s", trial.number, err)
        return
    except BaseException as err:
        # Bad input or an interrupt: this trial is not a result. Queue its parameters again so
        # the next run retries them, then stop the study with the error.
        trial.set_user_attr("interrupted", True)
        trial.set_user_attr("error", str(err)[:300])
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        if not isinstance(err, (ConfigError, DataError)):
            study.enqueue_trial(trial.params, user_attrs=retry_attrs(trial))
        raise
    finally:
        gc.collect()
    save_run_config(trial_dir, ft_job)  # the evaluation cadence the hook chose is part of it
    shutil.rmtree(trial_dir / "checkpoints", ignore_errors=True)
    trial.set_user_attr("steps", int(summary["steps"]))
    trial.set_user_attr("train_seconds", float(summary["train_seconds"]))
    trial.set_user_attr("eval_every", int(ft_job.train.eval_every))
    if hook is not None and hook.pruned:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        log.info("trial %d pruned at step %d", trial.number, summary["steps"])
        return
    try:
        result = [o.value(summary) for o in objs]
    except ConfigError:
        trial.set_user_attr("interrupted", True)
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        raise
    study.tell(trial, result if len(result) > 1 else result[0])
    log.info("trial %d: %s", trial.number,
             ", ".join(f"{o.name}={v:.4f}" for o, v in zip(objs, result, strict=True)))


def _final(job: TuneJob, study: Any, best: Any, run_dir: Path) -> dict[str, Any]:
    """Keep or retrain the best trial's model in ``final/`` and evaluate it on test once."""
    if job.tune.final == "none" or best is None:
        return {"mode": "none"}
    final_dir = run_dir / FINAL_DIR
    done = study.user_attrs.get("final", {})
    if done.get("trial") == best.number and done.get("mode") == job.tune.final and \
            (final_dir / "model").is_dir():
        return done  # already kept / retrained and tested for this best trial: test once
    if final_dir.exists():
        shutil.rmtree(final_dir)
    source = Path(best.user_attrs["run_dir"])
    if job.tune.final == "keep":
        shutil.copytree(source, final_dir, ignore=shutil.ignore_patterns("checkpoints"))
        lineage = read_lineage(final_dir)
        if lineage is not None:  # the copy says where it came from
            write_json(final_dir / "lineage.json", {**lineage, "run_dir": str(final_dir),
                                                    "copied_from": str(source)})
    else:
        ft_job = from_dict(FinetuneJob, {**report.load_config(source),
                                         "output_dir": str(final_dir)})
        run_command("finetune", ft_job, report_splits=("validation",))
        shutil.rmtree(final_dir / "checkpoints", ignore_errors=True)
    out: dict[str, Any] = {"mode": job.tune.final, "trial": best.number,
                           "model_dir": str(final_dir),
                           "note": ("kept: a copy of the best trial's run" if job.tune.final ==
                                    "keep" else "retrained from best.yaml")}
    evaluations = int(study.user_attrs.get("test_evaluations", 0))
    try:
        test = run_command("evaluate", EvaluateJob(run=str(final_dir), split="test",
                                                   output_dir=str(final_dir / "eval-test")))
        out["test_metrics"] = {k: v for k, v in test.items()
                               if isinstance(v, (int, float)) and k != "examples"}
        out["test_examples"] = test.get("examples")
        evaluations += 1
    except DataError as err:
        if "not found" not in str(err):
            raise
        out["test_metrics"] = None
        out["note"] += "; the data has no test split, so no test evaluation"
    out["test_evaluations"] = evaluations
    study.set_user_attr("test_evaluations", evaluations)
    study.set_user_attr("final", out)
    return out


def run_tune(job: TuneJob, resume: bool = False) -> dict[str, Any]:
    """Run (or continue) a study; write the trials table, best.yaml, plots and the final model.

    Args:
        job: The resolved config.
        resume: Accepted for symmetry; a study always continues when its storage exists.

    Returns:
        The summary written to ``summary.json``.
    """
    optuna = optuna_module()
    from optuna.storages._heartbeat import get_heartbeat_thread, is_heartbeat_enabled

    params = load_space(job.tune.space)
    base = base_config(job)
    if not job.model.pretrained:
        raise ConfigError("tune needs a starting model: set model.pretrained=FOLDER, a "
                          "pretrain run directory or a hub name")
    check_against(params, base)
    objs = objectives(job.tune, job.task)
    if job.tune.final == "keep" and job.tune.keep_models < 1:
        raise ConfigError("tune.final=keep needs the best trial's model: set "
                          "tune.keep_models >= 1, or tune.final=retrain")
    run = open_run("tune", job)
    run_dir = run.run_dir
    study = _open_study(job, run_dir, params, objs)
    recover_dead_trials(study)
    started = time.monotonic()
    stop_reason = None
    while (stop_reason := _should_stop(job, study, started)) is None:
        # With an RDB storage, trials whose worker stopped sending heartbeats are failed (and
        # retried once) before each new trial, and this worker beats while its trial runs, as
        # study.optimize() does.
        with warnings.catch_warnings():  # Optuna warns when heartbeats run outside optimize()
            warnings.simplefilter("ignore")
            if is_heartbeat_enabled(study._storage):
                optuna.storages.fail_stale_trials(study)
            trial = study.ask()
        with get_heartbeat_thread(trial._trial_id, study._storage):
            _run_trial(job, study, trial, params, objs, run_dir)
        report.keep_best_models(study, objs, job.tune.keep_models)
    log.info("study stops: %s", stop_reason)
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = report.best_trial(study, objs) if complete else None
    rows = report.trial_rows(trials, objs)
    report.write_table(rows, run_dir)
    if best is not None:
        report.write_best_yaml(best, run_dir / "best.yaml")
    plots = report.write_plots(study, objs, run_dir / "plots") if job.tune.plots else {}
    report.write_hparams(rows, objs, run_dir / "tb")
    final = _final(job, study, best, run_dir)
    states = {s.name.lower(): sum(t.state == s for t in trials)
              for s in optuna.trial.TrialState}
    summary = run.finish({
        "storage": job.tune.storage or str(run_dir / "study.journal"),
        "study_name": job.tune.study_name, "sampler": job.tune.sampler,
        "pruner": job.tune.pruner,
        "objectives": {o.name: o.direction for o in objs},
        "trials": {k: v for k, v in states.items() if v}, "stop_reason": stop_reason,
        "train_steps": _steps_used(study),
        "best": None if best is None else {
            "trial": best.number, "values": dict(zip([o.name for o in objs], best.values,
                                                     strict=True)),
            "params": best.params, "run_dir": best.user_attrs.get("run_dir"),
            "seed": best.user_attrs.get("seed")},
        "best_config": str(run_dir / "best.yaml") if best is not None else None,
        "pareto_front": [t.number for t in study.best_trials] if len(objs) > 1 else None,
        "final": final, "plots": plots,
        "trials_table": str(run_dir / "trials.md"),
        "seconds": round(time.monotonic() - started, 2),
    })
    summary["table"] = report.markdown(rows[:20])
    return summary
