"""Every registered task provides what serving, export and PEFT need, in its own home."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

import lmforge
from lmforge.config import from_dict
from lmforge.finetuning.saved import TASK_FILE, read_settings, write_settings
from lmforge.finetuning.task import TASKS, Task, TaskSettings, get_task, task_config
from lmforge.peft.methods import PeftTask
from lmforge.wire import Route

SRC = Path(lmforge.__file__).parent


@pytest.mark.parametrize("name", list(TASKS))
def test_task_lives_in_its_own_package(name: str) -> None:
    # The naming rule (docs/architecture.md): finetuning/<name>/{data,task}.py, and an
    # objective.py unless the task is one of the generative tasks sharing generative.py.
    module, cls = TASKS[name].task.split(":")
    assert module == f"lmforge.finetuning.{name}.task"
    assert TASKS[name].config.split(":")[0] == f"lmforge.finetuning.{name}.settings"
    folder = SRC / "finetuning" / name
    task = get_task(name)
    assert (folder / "data.py").is_file() and (folder / "task.py").is_file()
    assert (folder / "objective.py").is_file() or task.generative
    assert type(task).__name__ == cls and task.name == name


@pytest.mark.parametrize("name", list(TASKS))
def test_task_provides_what_other_stages_ask(name: str, tmp_path: Path) -> None:
    from peft import TaskType

    task = get_task(name)
    assert isinstance(task, Task)
    # Typed settings that round-trip through lmforge_task.json.
    assert issubclass(task.settings_class, TaskSettings)
    settings = task.settings_class(task=name)
    write_settings(tmp_path, settings)
    loaded_task, loaded = read_settings(tmp_path)
    assert loaded_task.name == name and loaded == settings
    assert from_dict(task.settings_class, dataclasses.asdict(settings)) == settings
    # PEFT: a peft task type, and every member of the protocol the PEFT methods call.
    assert task.peft_task_type in TaskType.__members__
    members = set(PeftTask.__annotations__) | {n for n in vars(PeftTask)
                                               if not n.startswith("_")}
    assert members >= {"name", "has_head", "load_model"}
    assert all(hasattr(task, member) for member in members), members
    # An example record that the task's own check accepts (server warm-up, fuzzing).
    record = task.example_record(settings)
    assert task.check_record(settings, record) is None
    assert task.check_record(settings, {}) is not None  # and the check really checks
    # The record model of POST /predict accepts what the check accepts, and says so.
    model = task.input_record_model(settings)
    valid = model.model_validate(record).model_dump(by_alias=True, exclude_none=True)
    assert task.check_record(settings, valid) is None
    with pytest.raises(ValidationError):
        model.model_validate({})
    assert model.model_json_schema()["type"] == "object"
    if task.accepts_texts:
        assert task.check_record(settings, task.record_from_text(settings, "a text")) is None
    # Export: ONNX outputs with an output class, or a generative task (no ONNX graph).
    assert bool(task.onnx_outputs) != task.generative
    if task.onnx_outputs:
        output_class = task.onnx_output_class()
        assert set(task.onnx_outputs) <= {f.name for f in dataclasses.fields(output_class)}
        pairs = task.sample_inputs(settings, None)
        assert pairs and all(isinstance(text, str) for text, _ in pairs)
    # Serving: a route with request / response schemas, or /generate for generative tasks.
    route = task.http_route(settings)
    if task.generative:
        assert route is None
        assert type(task).generation_inputs is not Task.generation_inputs  # overridden
    else:
        assert isinstance(route, Route) and route.path.startswith("/")
        assert route.path not in ("/predict", "/generate", "/health", "/ready", "/info")
        assert route.request.model_json_schema()["type"] == "object"
        assert route.response.model_json_schema()["type"] == "object"


def test_routes_are_distinct() -> None:
    paths = [r.path for name in TASKS
             if (r := get_task(name).http_route(get_task(name).settings_class(task=name)))]
    assert len(paths) == len(set(paths))


def _string_literals(path: Path) -> set[str]:
    """The string constants of a module that are not documentation.

    A bare string statement (a module, class or function docstring, or an attribute's
    docstring after it) has no effect on what the code does, so a task name in it is prose;
    every other string constant, f-string parts included, is code.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    prose = {id(node.value) for node in ast.walk(tree)
             if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)}
    return {node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in prose}


def _modules_outside_finetuning() -> list[Path]:
    return [f for f in sorted(SRC.rglob("*.py"))
            if not f.is_relative_to(SRC / "finetuning")]


def test_no_task_name_branching_outside_the_task_modules() -> None:
    """A task's name appears as a string literal only in its own package and the registry.

    Every module outside ``lmforge/finetuning`` (serving, export, PEFT, the settings,
    tuning, explaining, adversarial, pipelines, the commands, ...) asks the task object what
    it needs (``get_task(name).<method>()``, ``predictor.task``), so no table or branch keyed
    by task names can grow there: there are no exceptions. Only literals exactly equal to a
    registered name count: a name inside a longer text (``"single-label classification
    models"``, a help text) is prose, not a lookup key, and docstrings are skipped.
    """
    found = {str(f.relative_to(SRC)): sorted(set(TASKS) & _string_literals(f))
             for f in _modules_outside_finetuning()}
    assert len(found) > 50  # the walk really covers the tree
    assert {f: names for f, names in found.items() if names} == {}


def test_the_name_guard_sees_literals_but_not_docstrings(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text('"""About classification."""\n\nX = 1\n"""classification, too."""\n'
                      'T = {"qa": 1}\nM = f"{X}seq2seq"\nH = "a classification model"\n')
    assert _string_literals(source) & set(TASKS) == {"qa", "seq2seq"}


@pytest.mark.parametrize("name", list(TASKS))
def test_task_declares_its_tuning_explain_and_attack_facts(name: str) -> None:
    # lmforge tune, explain and attack ask the task; what they get lives in its package.
    task = get_task(name)
    options = task_config(name)
    variants = [options]
    if hasattr(options, "multi_label"):  # classification reports other metrics then
        variants.append(dataclasses.replace(options, multi_label=True))
    for variant in variants:
        metrics = task.tuning_objectives(variant)
        assert metrics[0] == "eval_loss" and all(m.startswith("eval_") for m in metrics)
    for declared, module in ((task.explain_adapter(), "explain"),
                             (task.attack_target(), "attack")):
        if declared is not None:
            assert declared.__module__ == f"lmforge.finetuning.{name}.{module}"
    adapter = task.explain_adapter()
    if adapter is not None:
        assert adapter.perturbation in ("delete", "replace")
        for method in ("encode", "resolve_targets", "logits", "score", "readout_positions"):
            assert callable(getattr(adapter, method))
    # POST /explain is mounted only where the task's explanations can be computed.
    assert not task.serves_explanations or adapter is not None
    assert not task.generative or adapter is None  # generated text is not explained


def test_explain_and_attack_import_no_task() -> None:
    # Both sit below the fine-tuning tasks: they ask the task object they are given and never
    # import a task or the registry, not even inside a function.
    for package in ("explaining", "adversarial"):
        for f in sorted((SRC / package).rglob("*.py")):
            tree = ast.parse(f.read_text(encoding="utf-8"))
            imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                        for alias in node.names]
            imported += [node.module or "" for node in ast.walk(tree)
                         if isinstance(node, ast.ImportFrom)]
            imported += [node.value for node in ast.walk(tree)  # importlib.import_module(...)
                         if isinstance(node, ast.Constant) and isinstance(node.value, str)
                         and node.value.startswith("lmforge.")]
            assert not [m for m in imported if m.startswith("lmforge.finetuning")], f


def test_old_task_files_still_load(tmp_path: Path) -> None:
    # lmforge_task.json written before the settings were typed (the same keys) still loads.
    old = {"task": "classification", "labels": ["neg", "pos"], "multi_label": False,
           "text_column": "sentence", "text_pair_column": None, "label_column": "label",
           "label_separator": ",", "class_weights": "none", "max_length": 64,
           "thresholds": None}
    (tmp_path / TASK_FILE).write_text(json.dumps(old))
    task, settings = read_settings(tmp_path)
    assert task.name == "classification"
    assert settings.labels == ["neg", "pos"] and settings.text_column == "sentence"
    assert task.label_names(settings) == ["neg", "pos"]


def test_a_misspelled_key_in_the_task_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / TASK_FILE).write_text(json.dumps({"task": "classification", "lables": []}))
    with pytest.raises(lmforge.ConfigError, match="unknown config key 'lables'.*labels"):
        read_settings(tmp_path)


def test_registry_modules_import_lazily() -> None:
    # The CLI's config and help load without torch: the registry is strings until used.
    import subprocess
    import sys

    code = ("import sys, lmforge.cli, lmforge.settings; "
            "print(sorted(m for m in ('torch', 'datasets', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"
    assert importlib.util.find_spec("lmforge.finetuning.classification.task") is not None
