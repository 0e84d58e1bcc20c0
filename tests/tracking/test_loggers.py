"""Tests for lmforge.tracking: loggers, build_loggers and ProgressBar."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from lmforge.errors import ConfigError
from lmforge.tracking import (
    METRICS_FILE,
    RUN_CONFIG_FILE,
    JsonlLogger,
    Logger,
    MultiLogger,
    ProgressBar,
    TensorBoardLogger,
    build_loggers,
    flatten_config,
)


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_writes_flushed_lines_and_appends_on_resume(tmp_path: Path):
    first = JsonlLogger(tmp_path)
    first.log({"train/loss": 2.5, "lr": 1e-3}, step=1)
    # Flushed per line: readable before close, as after a kill.
    assert _read_jsonl(tmp_path / METRICS_FILE)[0]["train/loss"] == 2.5
    first.close()

    resumed = JsonlLogger(tmp_path)
    resumed.log({"train/loss": 2.0}, step=2)
    resumed.close()

    records = _read_jsonl(tmp_path / METRICS_FILE)
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["lr"] == 1e-3
    assert list(records[0])[0] == "step"
    assert isinstance(records[1]["time"], float)


def test_jsonl_converts_tensors_and_writes_config(tmp_path: Path):
    import torch

    logger = JsonlLogger(tmp_path)
    logger.log({"loss": torch.tensor(1.5)}, step=3)
    logger.log_config({"optim": {"lr": 0.1}, "path": tmp_path})
    logger.close()
    assert _read_jsonl(tmp_path / METRICS_FILE)[0]["loss"] == 1.5
    config = json.loads((tmp_path / RUN_CONFIG_FILE).read_text())
    assert config["optim"]["lr"] == 0.1
    assert config["path"] == str(tmp_path)


def test_tensorboard_event_file_has_scalars_and_config(tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path)
    logger.log_config({"model": {"d_model": 64}})
    logger.log_config({"model": {"d_model": 128}})  # ignored: config is written once
    logger.log({"train/loss": 3.0}, step=1)
    logger.log({"train/loss": 2.25}, step=2)
    logger.close()

    tb_dir = tmp_path / "tb"
    assert list(tb_dir.glob("events.out.tfevents.*"))
    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    scalars = acc.Scalars("train/loss")
    assert [(s.step, s.value) for s in scalars] == [(1, 3.0), (2, 2.25)]
    assert len(acc.Tensors("config/text_summary")) == 1


def test_build_loggers_fans_out(tmp_path: Path):
    loggers = build_loggers(tmp_path, ["JSONL", "tensorboard", "jsonl"])
    assert [type(x).__name__ for x in loggers.loggers] == ["JsonlLogger", "TensorBoardLogger"]
    assert all(isinstance(x, Logger) for x in loggers.loggers)
    with loggers:
        loggers.log_config({"a": 1})
        loggers.log({"loss": 1.0}, step=5)
    assert _read_jsonl(tmp_path / METRICS_FILE)[0]["step"] == 5
    assert (tmp_path / "tb").is_dir()


def test_build_loggers_accepts_comma_string(tmp_path: Path):
    loggers = build_loggers(tmp_path, "jsonl, tensorboard")
    assert len(loggers.loggers) == 2
    loggers.close()


def test_unknown_backend_suggests_closest(tmp_path: Path):
    with pytest.raises(ConfigError) as info:
        build_loggers(tmp_path, ["jsonl", "tensorbord"])
    message = str(info.value)
    assert "'tensorbord'" in message
    assert "did you mean 'tensorboard'" in message
    assert "\n" not in message


def test_non_main_process_logs_nothing(tmp_path: Path):
    loggers = build_loggers(tmp_path / "run", ["jsonl", "tensorboard"], is_main_process=False)
    assert loggers.loggers == ()
    loggers.log({"loss": 1.0}, step=1)
    loggers.close()
    assert not (tmp_path / "run").exists()


def test_multilogger_closes_all_even_if_one_fails():
    class Broken:
        def log(self, metrics, step):
            pass

        def log_config(self, config):
            pass

        def close(self):
            raise RuntimeError("boom")

    class Recorder(Broken):
        closed = False

        def close(self):
            self.closed = True

    recorder = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        MultiLogger([Broken(), recorder]).close()
    assert recorder.closed


def test_flatten_config():
    assert flatten_config({"a": {"b": 1, "c": {"d": "x"}}, "e": [1]}) == [
        ("a.b", 1),
        ("a.c.d", "x"),
        ("e", [1]),
    ]


def test_wandb_logger_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # wandb is installed by scripts/bootstrap.sh (the dev extra): this test must run, not skip.
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = build_loggers(tmp_path, ["wandb"], project="lmforge-test", run_name="t")
    loggers.log_config({"optim": {"lr": 0.1}})
    loggers.log({"loss": 1.0}, step=1)
    loggers.log({"loss": 0.5}, step=2)
    loggers.close()
    # Offline mode: one local run folder holding the run's history file, nothing uploaded.
    (run,) = (tmp_path / "wandb").glob("offline-run-*")
    (history,) = run.glob("run-*.wandb")
    assert history.stat().st_size > 0
    assert not list((tmp_path / "wandb").glob("run-*"))  # an online run would be named so


def test_mlflow_logger_local_file_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # mlflow is installed by scripts/bootstrap.sh (the dev extra): this test must run, not skip.
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # Recorded so that the logger's opt-in to MLflow's file store is undone after the test.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    loggers = build_loggers(tmp_path, ["mlflow"], project="lmforge-test", run_name="t")
    loggers.log_config({"optim": {"lr": 0.1}})
    loggers.log({"loss": 1.0}, step=1)
    loggers.log({"loss": 0.5}, step=2)
    loggers.close()
    store = tmp_path / "mlruns"
    assert store.is_dir()
    client = MlflowClient(tracking_uri=store.as_uri())
    experiment = client.get_experiment_by_name("lmforge-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "t" and run.info.status == "FINISHED"
    assert run.data.params == {"optim.lr": "0.1"}
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(1, 1.0), (2, 0.5)]


def test_missing_optional_backend_names_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import sys

    # A None entry in sys.modules makes `import wandb` raise ImportError even when installed.
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match=r"pip install 'lmforge\[wandb\]'"):
        build_loggers(tmp_path, ["jsonl", "wandb"])


def test_progress_line_mode_reports_every_tenth(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LMFORGE_PROGRESS", raising=False)
    stream = io.StringIO()  # not a TTY -> plain lines
    bar = ProgressBar(total_steps=100, desc="pretrain", stream=stream)
    for _ in range(100):
        bar.update(1, loss=2.0, tokens_per_s=12_345.0)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10
    assert lines[0].startswith("pretrain: step 10/100 (10%)")
    assert "loss 2.0000" in lines[0]
    assert "tok/s 12.3k" in lines[0]
    assert "eta" in lines[0]
    assert lines[-1].startswith("pretrain: step 100/100 (100%)")


def test_progress_resume_and_disabled(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LMFORGE_PROGRESS", raising=False)
    stream = io.StringIO()
    bar = ProgressBar(total_steps=100, initial=55, stream=stream)
    for _ in range(10):
        bar.update(1, loss=1.0)
    bar.close()
    assert [line.split(" (")[0] for line in stream.getvalue().splitlines()] == [
        "train: step 60/100"
    ]

    silent = io.StringIO()
    off = ProgressBar(total_steps=10, enabled=False, stream=silent)
    off.update(10, loss=1.0)
    off.write("hello")
    off.close()
    assert silent.getvalue() == ""


def test_progress_forced_bar(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("LMFORGE_PROGRESS", "1")
    stream = io.StringIO()
    with ProgressBar(total_steps=4, stream=stream) as bar:
        bar.update(4, loss=0.5, tokens_per_s=2_000_000.0)
    output = stream.getvalue()
    assert "4/4" in output
    assert "loss=0.5000" in output
    assert "tok/s=2.0M" in output
