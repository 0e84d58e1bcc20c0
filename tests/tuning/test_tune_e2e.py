"""``lmforge tune`` end to end on a tiny task: outputs, reproduction, resume, pruning, workers."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

import lmforge
from lmforge.cli import main
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


def test_resume_continues_the_study_and_pruning_stops_trials(
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
