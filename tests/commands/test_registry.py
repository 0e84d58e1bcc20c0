"""The command registry: every entry is a CLI command, a Python API call and, where it says
so, a pipeline stage; a toy command and a toy task are one module plus one registry line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lmforge
from lmforge.cli import build_parser, main
from lmforge.commands.pipeline import parse_stage
from lmforge.commands.registry import COMMANDS, Command, pipeline_commands
from lmforge.commands.runner import resolve_job
from lmforge.config import iter_options
from lmforge.errors import ConfigError
from lmforge.finetuning.task import TASKS, TaskEntry, all_tasks, get_task
from tests.commands.toy_command import ToyJob
from tests.finetuning.test_registry import test_task_provides_what_other_stages_ask


def _help(name: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*name.split(), "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_has_help_an_api_call_and_a_pipeline_answer(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    command = COMMANDS[name]
    text = _help(name, capsys)
    for key, _default, _help_text in iter_options(command.config):
        assert f"  {key} = " in text, f"{name} --help misses {key}"
    # The Python API resolves the same config: the defaults alone are a valid config, or a
    # one-line config error that names what is missing (a pipeline its stages, a stream its
    # experiences).
    try:
        assert isinstance(resolve_job(name), command.config)
    except ConfigError as err:
        assert "\n" not in str(err) and name in ("pipeline", "continual"), str(err)
    # A pipeline takes the command as a stage exactly when the registry says so.
    if command.pipeline_stage:
        assert parse_stage("s", {"command": name}).command == name
    else:
        with pytest.raises(ConfigError):
            parse_stage("s", {"command": name})
    # The entry point is importable and takes (job, resume=...).
    assert callable(command.load())


def test_every_command_is_listed_in_the_top_level_help() -> None:
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name.split()[0] in text


@pytest.fixture
def toy_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # The one registry line a new command needs.
    monkeypatch.setitem(COMMANDS, "toy", Command(
        ToyJob, "tests.commands.toy_command:run_toy", "count words (a test command)",
        summary_keys=("counts",)))


def test_a_toy_command_is_one_module_plus_one_registry_line(
        toy_command: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "greeting = 'hello toy world'" in _help("toy", capsys)
    # The CLI runs it ...
    assert main(["toy", "repeat=2", f"--output-dir={tmp_path / 'cli'}"]) == 0
    summary = json.loads((tmp_path / "cli" / "summary.json").read_text())
    assert summary["counts"] == {"words": 6}
    assert (tmp_path / "cli" / "lineage.json").is_file()  # the runner writes lineage
    # ... the Python API runs it, with its headline metrics from its summary keys ...
    result = lmforge.run("toy", greeting="a b", output_dir=str(tmp_path / "api"))
    assert result.metrics == {"words": 2.0} and result.run_dir == tmp_path / "api"
    # ... a bad value is the config's one-line error ...
    with pytest.raises(ConfigError, match="repeat must be >= 1"):
        lmforge.run("toy", None, "repeat=0")
    # ... and a pipeline runs it as a stage.
    spec = tmp_path / "pipeline.yaml"
    spec.write_text("name: toy\nstages:\n  hello:\n    command: toy\n    config:\n"
                    "      greeting: one two three four\n", encoding="utf-8")
    out = tmp_path / "pipe"
    assert main(["pipeline", "-c", str(spec), f"--output-dir={out}"]) == 0
    stage = json.loads((out / "pipeline.json").read_text())["stages"]["hello"]
    assert stage["status"] == "done" and stage["metrics"] == {"words": 4}
    assert "toy" in pipeline_commands()


def test_a_toy_task_is_one_module_plus_one_registry_line(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(TASKS, "toy", TaskEntry("tests.commands.toy_task:ToyTask",
                                                "tests.commands.toy_task:ToyConfig"))  # one line
    assert get_task("toy").name == "toy" and "toy" in all_tasks()
    # Everything serving, export, PEFT, tuning, explaining and attacks ask of a task.
    test_task_provides_what_other_stages_ask("toy", tmp_path)
    # The finetune config accepts it and its help names it.
    job = resolve_job("finetune", overrides=("task.name=toy",))
    assert job.task.name == "toy" and type(job.task).__name__ == "ToyConfig"
    # Its section holds its own options, and only those.
    assert resolve_job("finetune", overrides=("task.name=toy", "task.label_column=stance")) \
        .task.label_column == "stance"
    with pytest.raises(ConfigError, match="task.doc_stride is an option of task.name=qa"):
        resolve_job("finetune", overrides=("task.name=toy", "task.doc_stride=64"))
    with pytest.raises(ConfigError, match="task.name"):
        resolve_job("finetune", overrides=("task.name=toyy",))
