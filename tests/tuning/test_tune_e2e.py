"""``lmforge tune`` end to end on a tiny task: outputs, reproduction, resume, pruning, workers."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

import lmforge
import lmforge.commands.tune as tune_command
from lmforge.cli import main
from lmforge.engine.hooks import StepHook
from tests.tuning.conftest import finetune_config, write_yaml

SPACE = {"train.lr": {"log_uniform": [1e-3, 1e-2]}, "train.batch_size": [8, 16]}


def _tune(encoder: Path, data: Path, out: Path, space: Path, **tune: object) -> lmforge.RunResult:
    return lmforge.tune(finetune_config(encoder, data), output_dir=str(out),
                        tune={"space": str(space), "n_trials": 3, "plots": False, **tune})


def test_study_outputs_best_yaml_reproduces_and_test_is_used_once(
        tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = tiny_task
    space = write_yaml(tmp_path / "space.yaml", SPACE)
    result = _tune(encoder, data, tmp_path / "study", space, plots=True, pruner="none")
    s = result.summary
    out = tmp_path / "study"
    assert s["trials"] == {"complete": 3}
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert len(rows) == 3 and {"train.lr", "train.batch_size", "seed", "steps"} <= set(rows[0])
    assert (out / "trials.md").read_text().startswith("| trial | state | eval_accuracy")
    assert sorted(p.name for p in (out / "plots").glob("*.png")) == [
        "history.png", "importances.png", "intermediate.png"]
    assert any((out / "tb").iterdir())
    page = (out / "report.html").read_text()  # the study's run report (track.report)
    assert "Best trial" in page and "Trials (3, best first)" in page
    # Every trial is a normal run directory; only the best keeps its model (keep_models=1).
    trial_dirs = sorted((out / "trials").iterdir())
    assert all((d / "config.yaml").is_file() and (d / "lineage.json").is_file()
               for d in trial_dirs)
    assert sum((d / "model").is_dir() for d in trial_dirs) == 1
    assert not any((d / "checkpoints").exists() for d in trial_dirs)
    # Trials never see test; the final model (kept from the best trial) is tested once.
    assert all("test_metrics" not in json.loads((d / "summary.json").read_text())
               for d in trial_dirs)
    assert s["final"]["mode"] == "keep" and s["final"]["trial"] == s["best"]["trial"]
    assert s["final"]["test_evaluations"] == 1 and "accuracy" in s["final"]["test_metrics"]
    assert result.metrics["eval_accuracy"] == s["best"]["values"]["eval_accuracy"]
    # best.yaml reproduces the best trial with plain `lmforge finetune`.
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["train"]["lr"] == s["best"]["params"]["train.lr"]
    again = lmforge.finetune(str(out / "best.yaml"), output_dir=str(tmp_path / "again"))
    assert again.summary["best_metric"]["eval_accuracy"] == pytest.approx(
        s["best"]["values"]["eval_accuracy"])
    # Running the finished study again adds no trial and does not test again.
    rerun = _tune(encoder, data, out, space, pruner="none")
    assert rerun.summary["trials"] == {"complete": 3}
    assert rerun.summary["final"]["test_evaluations"] == 1


def test_resume_continues_the_study_and_retries_a_dead_workers_trial(
        tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = tiny_task
    space = write_yaml(tmp_path / "space.yaml", SPACE)
    out = tmp_path / "study"
    first = _tune(encoder, data, out, space, n_trials=2, pruner="median",
                  prune_startup_trials=1, prune_warmup=0, final="none")
    assert sum(first.summary["trials"].values()) == 2
    # Continue to 4 trials; a dead worker's RUNNING trial is retried, not lost.
    study = optuna.load_study(study_name="lmforge", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    ghost = study.ask({"train.lr": optuna.distributions.FloatDistribution(1e-3, 1e-2,
                                                                         log=True)})
    ghost.set_user_attr("worker", f"{os.uname().nodename}:999999")
    second = _tune(encoder, data, out, space, n_trials=4, pruner="median",
                   prune_startup_trials=1, prune_warmup=0, final="none")
    trials = study.get_trials()
    assert trials[ghost.number].state == optuna.trial.TrialState.FAIL
    assert any(t.user_attrs.get("retry_of") == ghost.number for t in trials)
    states = second.summary["trials"]
    assert states.get("complete", 0) + states.get("pruned", 0) == 4
    # Intermediate values are reported at each evaluation (2 per epoch by default).
    assert all(len(t.intermediate_values) >= 1 for t in trials
               if t.state == optuna.trial.TrialState.COMPLETE)
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    for t in pruned:  # a pruned trial stopped early and kept its record
        assert t.user_attrs["steps"] < 12
        assert (Path(t.user_attrs["run_dir"]) / "summary.json").is_file()


def test_median_pruner_stops_a_diverging_trial_at_its_first_evaluation(
        tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    """A trial far worse than the finished one is pruned, and stops there.

    The order is fixed by enqueueing both trials: lr=1e-6 barely moves the model (eval loss
    stays near ln 2 = 0.69), lr=0.1 makes it diverge (eval loss about 5.8 after 3 steps).
    eval_loss, not accuracy, is the objective: on this tiny task both stay at chance accuracy.
    """
    encoder, data = tiny_task
    out = tmp_path / "study"
    out.mkdir()
    study = optuna.create_study(
        study_name="lmforge", direction="minimize",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    for lr in (1e-6, 0.1):
        study.enqueue_trial({"train.lr": lr})
    space = write_yaml(tmp_path / "space.yaml", {"train.lr": [1e-6, 0.1]})
    result = _tune(encoder, data, out, space, n_trials=2, objective=["eval_loss"],
                   pruner="median", prune_startup_trials=1, prune_warmup=0, final="none")
    assert result.summary["trials"] == {"complete": 1, "pruned": 1}
    done, pruned = study.get_trials()
    assert done.state == optuna.trial.TrialState.COMPLETE and done.params["train.lr"] == 1e-6
    assert pruned.state == optuna.trial.TrialState.PRUNED and pruned.params["train.lr"] == 0.1
    # 6 steps per epoch, 2 evaluations per epoch: the finished trial reported 4 times, the
    # pruned one once (step 3 of 12) and then stopped; its run still saved a summary.
    assert sorted(done.intermediate_values) == [1, 2, 3, 4]
    assert list(pruned.intermediate_values) == [1]
    assert pruned.intermediate_values[1] > 2 * done.intermediate_values[1]
    assert done.user_attrs["steps"] == 12 and pruned.user_attrs["steps"] == 3
    summary = json.loads((Path(pruned.user_attrs["run_dir"]) / "summary.json").read_text())
    assert summary["steps"] == 3
    assert result.summary["best"]["trial"] == done.number


def test_two_worker_processes_share_one_study(tiny_task: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    encoder, data = tiny_task
    config = write_yaml(tmp_path / "ft.yaml", finetune_config(encoder, data, max_steps=24))
    space = write_yaml(tmp_path / "space.yaml", SPACE)
    journal = tmp_path / "shared.journal"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    workers = [subprocess.Popen(
        [sys.executable, "-m", "lmforge", "tune", "-c", str(config), "-s", str(space),
         "--storage", str(journal), "--output-dir", str(tmp_path / f"worker{i}"),
         "tune.n_trials=6", "tune.pruner=none", "tune.plots=false", "tune.final=none"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    for worker in workers:
        output, _ = worker.communicate(timeout=240)
        assert worker.returncode == 0, output[-2000:]
    study = optuna.load_study(study_name="lmforge", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(journal))))
    trials = study.get_trials()
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Both workers count the shared study: 6 trials, plus at most one started by the second
    # worker while the first was finishing the sixth.
    assert 6 <= len(done) <= 7 and len(done) == len(trials)
    assert len({t.user_attrs["worker"] for t in done}) == 2
    assert len({t.number for t in done}) == len(done)


class _CtrlC(StepHook):
    """Ctrl-C during trial 1, at train step 5 (after its checkpoint at step 3)."""

    def on_step_end(self, engine: Any, metrics: dict[str, float]) -> None:
        if engine.run_dir.name == "trial-0001" and engine.state.global_step == 5:
            raise KeyboardInterrupt


def test_an_interrupted_trial_resumes_from_its_checkpoint_on_rerun(
        tiny_task: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoder, data = tiny_task
    space = write_yaml(tmp_path / "space.yaml", {"train.lr": {"log_uniform": [1e-3, 1e-2]}})
    out = tmp_path / "study"
    run_command = tune_command.run_command
    monkeypatch.setattr(tune_command, "run_command", lambda name, job, hooks=(), **kw:
                        run_command(name, job, hooks=[*hooks, _CtrlC()], **kw))
    config = finetune_config(encoder, data, log_every=1)
    tune = {"space": str(space), "n_trials": 2, "plots": False, "pruner": "none",
            "final": "none"}
    with pytest.raises(KeyboardInterrupt):
        lmforge.tune(config, output_dir=str(out), tune=tune)
    monkeypatch.undo()
    trial_dir = out / "trials" / "trial-0001"
    assert [p.name for p in (trial_dir / "checkpoints").iterdir()] == ["step-00000003"]
    result = lmforge.tune(config, output_dir=str(out), tune=tune)
    assert result.summary["trials"] == {"complete": 2, "fail": 1}
    first, interrupted, retry = optuna.load_study(
        study_name="lmforge", storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(out / "study.journal")))).trials
    assert interrupted.user_attrs["interrupted"] and retry.user_attrs["retry_of"] == 1
    assert retry.params == interrupted.params and retry.user_attrs["run_dir"] == str(trial_dir)
    assert retry.user_attrs["steps"] == 12
    steps = [json.loads(line)["step"] for line in
             (trial_dir / "metrics.jsonl").read_text().splitlines() if "train_loss" in line]
    assert steps == [1, 2, 3, 4, *range(4, 13)]  # resumed at step 3, not restarted
    assert retry.intermediate_values[1] == interrupted.intermediate_values[1]
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    # The interrupted trial shares the retry's folder: the best model survives the clean-up.
    assert (Path(result.summary["best"]["run_dir"]) / "model").is_dir()


# `lmforge tune ARGS` whose trial 1 is killed with SIGKILL at train step 5, after the
# checkpoint at step 3 (6 steps per epoch, 2 evaluations per epoch): no except / finally runs.
KILL_AT_STEP_5_OF_TRIAL_1 = """
import os, signal, sys
import lmforge.commands.tune as tune
from lmforge.cli import main
from lmforge.engine.hooks import StepHook

class Kill(StepHook):
    def on_step_end(self, engine, metrics):
        if engine.run_dir.name == "trial-0001" and engine.state.global_step == 5:
            os.kill(os.getpid(), signal.SIGKILL)

run_command = tune.run_command
tune.run_command = lambda name, job, hooks=(), **kw: run_command(
    name, job, hooks=[*hooks, Kill()], **kw)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_trial_killed_with_sigkill_resumes_from_its_checkpoint_on_rerun(
        tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = tiny_task
    config = write_yaml(tmp_path / "ft.yaml", finetune_config(encoder, data, log_every=1))
    space = write_yaml(tmp_path / "space.yaml", {"train.lr": {"log_uniform": [1e-3, 1e-2]}})
    out = tmp_path / "study"
    args = ["tune", "-c", str(config), "-s", str(space), "--output-dir", str(out),
            "tune.n_trials=4", "tune.pruner=none", "tune.plots=false", "tune.final=none"]
    killed = subprocess.run([sys.executable, "-c", KILL_AT_STEP_5_OF_TRIAL_1, *args],
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True,
                            text=True, timeout=240)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    trial_dir = out / "trials" / "trial-0001"
    assert [p.name for p in (trial_dir / "checkpoints").iterdir()] == ["step-00000003"]

    assert main(args) == 0  # the same command again
    study = optuna.load_study(study_name="lmforge", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))))
    trials = study.get_trials()
    states = [t.state.name for t in trials]
    # The killed trial is not a result; its retry is, and the budget holds 4 results.
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE", "COMPLETE"], states
    killed_trial, retry = trials[1], trials[2]
    assert killed_trial.user_attrs["interrupted"] and retry.user_attrs["retry_of"] == 1
    assert retry.params == killed_trial.params
    assert retry.user_attrs["run_dir"] == str(trial_dir) and retry.user_attrs["steps"] == 12
    assert retry.user_attrs["seed"] == killed_trial.user_attrs["seed"]
    # Resumed at step 3, not restarted: steps 1-3 logged once; step 4 again after the kill
    # (step 5 was killed in its hooks, before its log line).
    steps = [json.loads(line)["step"] for line in
             (trial_dir / "metrics.jsonl").read_text().splitlines()
             if "train_loss" in line]
    assert steps == [1, 2, 3, 4, *range(4, 13)]
    # The evaluation before the kill is reported again; then evaluations 2-4 follow it.
    assert retry.intermediate_values[1] == killed_trial.intermediate_values[1]
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    # New trials draw new values (a re-seeded sampler would replay the first run's).
    lrs = [t.params["train.lr"] for t in trials]
    assert len(set(lrs)) == 4 and lrs[1] == lrs[2]
    best = json.loads((out / "summary.json").read_text())["best"]  # its model is kept
    assert (Path(best["run_dir"]) / "model" / "model.safetensors").is_file()


@pytest.mark.parametrize(("extra", "message"), [
    (["tune.objective=eval_acuracy"], "did you mean 'eval_accuracy'"),
    (["tune.objective=[eval_accuracy,trainable_parameters]"], "pruning needs a single"),
    (["tune.storage=postgresql://nobody@127.0.0.1:1/none"], "cannot open tune.storage"),
    (["tune.sampler=grid"], "needs discrete values"),
])
def test_bad_input_is_one_line_and_exit_2(tiny_task: tuple[Path, Path], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str], extra: list[str],
                                         message: str) -> None:
    encoder, data = tiny_task
    config = write_yaml(tmp_path / "ft.yaml", finetune_config(encoder, data))
    space = write_yaml(tmp_path / "space.yaml", {**SPACE, "train.warmup_ratio":
                                                 {"uniform": [0.0, 0.1]}})
    code = main(["tune", "-c", str(config), "-s", str(space), "--output-dir",
                 str(tmp_path / "study"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "study" / "trials").exists()  # failed before the first trial


def test_a_changed_space_does_not_silently_join_an_old_study(
        tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = tiny_task
    out = tmp_path / "study"
    _tune(encoder, data, out, write_yaml(tmp_path / "a.yaml", SPACE), n_trials=1,
          final="none", pruner="none")
    with pytest.raises(lmforge.ConfigError, match="another fine-tuning config, search space"):
        _tune(encoder, data, out, write_yaml(tmp_path / "b.yaml", {"train.batch_size": [8]}),
              n_trials=2, final="none", pruner="none")
    trials = json.loads((out / "summary.json").read_text())["trials"]
    assert trials == {"complete": 1}  # the finished trial is kept


def test_multi_objective_gives_a_pareto_front(tiny_task: tuple[Path, Path],
                                              tmp_path: Path) -> None:
    encoder, data = tiny_task
    space = write_yaml(tmp_path / "space.yaml", {"peft.method": ["none", "bitfit"]})
    result = _tune(encoder, data, tmp_path / "study", space, n_trials=2, sampler="grid",
                   pruner="none", final="none", plots=True,
                   objective=["eval_accuracy", "trainable_parameters"],
                   storage=f"sqlite:///{tmp_path / 'study.db'}")  # an RDB, with heartbeats
    s = result.summary
    assert s["objectives"] == {"eval_accuracy": "maximize", "trainable_parameters": "minimize"}
    assert s["stop_reason"] == "grid exhausted" or s["trials"] == {"complete": 2}
    assert s["pareto_front"] and (tmp_path / "study" / "plots" / "pareto.png").is_file()
    assert s["storage"].startswith("sqlite:///") and (tmp_path / "study.db").is_file()
    rows = list(csv.DictReader((tmp_path / "study" / "trials.csv").open()))
    params = {r["peft.method"]: int(float(r["trainable_parameters"])) for r in rows}
    assert params["bitfit"] < params["none"]


def test_pruners_are_built_from_their_names() -> None:
    from lmforge.tuning.settings import TuneConfig
    from lmforge.tuning.study import direction_of, make_pruner

    kinds = {name: type(make_pruner(TuneConfig(pruner=name))).__name__
             for name in ("none", "median", "successive_halving", "hyperband")}
    assert kinds == {"none": "NopPruner", "median": "MedianPruner",
                     "successive_halving": "SuccessiveHalvingPruner",
                     "hyperband": "HyperbandPruner"}
    # Evaluation numbers start at 1: prune_warmup=1 keeps the first evaluation safe.
    assert make_pruner(TuneConfig(pruner="median", prune_warmup=1))._n_warmup_steps == 2
    assert [direction_of(m) for m in ("eval_loss", "eval_accuracy", "trainable_parameters",
                                      "f1", "eval_perplexity")] == \
        ["minimize", "maximize", "minimize", "maximize", "minimize"]


def test_pruning_hook_sets_the_cadence_reports_and_stops() -> None:
    from types import SimpleNamespace

    from lmforge.tuning.study import PruningHook

    class Trial:
        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) == 2  # prune at the second evaluation

    trial = Trial()
    engine = SimpleNamespace(cfg=SimpleNamespace(eval_every=0), steps_per_epoch=10,
                             state=SimpleNamespace(global_step=0), should_stop=False)
    hook = PruningHook(trial, "eval_accuracy", evals_per_epoch=2)
    hook.on_train_begin(engine)
    assert engine.cfg.eval_every == 5
    engine.state.global_step = 5
    hook.on_evaluate(engine, {"eval_accuracy": 0.6, "eval_loss": 0.7})
    assert not engine.should_stop
    engine.state.global_step = 10
    hook.on_evaluate(engine, {"eval_accuracy": 0.55})
    assert trial.reports == [(0.6, 1), (0.55, 2)]
    assert engine.should_stop and hook.pruned


def test_compute_budget_stops_the_study(tiny_task: tuple[Path, Path], tmp_path: Path) -> None:
    encoder, data = tiny_task
    space = write_yaml(tmp_path / "space.yaml", SPACE)
    result = _tune(encoder, data, tmp_path / "study", space, n_trials=5, max_train_steps=10,
                   pruner="none", final="none")
    # Each trial runs 12 steps: the first one spends the budget of 10.
    assert result.summary["trials"] == {"complete": 1}
    assert result.summary["stop_reason"] == "compute budget of 10 train steps reached"
    assert result.summary["train_steps"] == 12
