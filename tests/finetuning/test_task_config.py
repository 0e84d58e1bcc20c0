"""The ``task`` section: one variant per task, declared once in the task's ``settings.py``."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from lmforge.config import build_config, from_dict, iter_options
from lmforge.errors import ConfigError
from lmforge.finetuning.settings import FinetuneJob
from lmforge.finetuning.task import TASKS, TaskConfig, get_task, task_config

# The ``task`` section as lmforge <= 0.x saved it in a run's config.yaml: every task's keys
# at their defaults (here with a QA run's own values), before the section was split.
LEGACY_TASK_SECTION = {
    "name": "qa", "text_column": "text", "text_pair_column": None, "label_column": "label",
    "multi_label": False, "label_separator": ",", "class_weights": "none",
    "tokens_column": "tokens", "tags_column": "tags", "scheme": "BIO",
    "label_all_subwords": False, "question_column": "q", "context_column": "context",
    "answers_column": "answers", "id_column": "id", "doc_stride": 64, "n_best": 20,
    "max_answer_length": 30, "allow_unanswerable": False, "source_column": "source",
    "target_column": "target", "source_prefix": "", "max_target_length": 128,
    "max_new_tokens": 128, "num_beams": 1, "messages_column": "messages",
    "prompt_column": "prompt", "response_column": "response", "train_on_prompt": False,
}


def _fields(cls: type) -> dict[str, object]:
    return {f.name: f.default for f in dataclasses.fields(cls)}


@pytest.mark.parametrize("name", list(TASKS))
def test_options_are_declared_once_and_saved_with_the_model(name: str) -> None:
    # Every task.* option is a field of the settings saved with the model, with the same
    # default: setup() copies the section instead of re-declaring it.
    section = type(task_config(name))
    saved = get_task(name).settings_class
    options = {k: v for k, v in _fields(section).items() if k != "name"}
    assert options, f"{name} declares no options"
    saved_fields = _fields(saved)
    for key, default in options.items():
        if key == "text_column" and key not in saved_fields:
            continue
        assert key in saved_fields and saved_fields[key] == default, (name, key)


def test_only_the_chosen_task_s_keys_are_valid() -> None:
    job = build_config(FinetuneJob, overrides=["task.name=token_classification",
                                                "task.scheme=BIOES"])
    assert job.task.scheme == "BIOES" and not hasattr(job.task, "doc_stride")
    with pytest.raises(ConfigError, match=r"task.doc_stride is an option of task.name=qa, "
                                          r"not of task.name=token_classification"):
        build_config(FinetuneJob, overrides=["task.name=token_classification",
                                             "task.doc_stride=64"])
    with pytest.raises(ConfigError, match=r"did you mean 'task.doc_stride'"):
        build_config(FinetuneJob, overrides=["task.name=qa", "task.doc_strid=64"])
    with pytest.raises(ConfigError, match=r"task.name='nope' is not valid"):
        build_config(FinetuneJob, overrides=["task.name=nope"])


def test_a_config_saved_before_the_split_still_loads() -> None:
    job = from_dict(FinetuneJob, {"task": LEGACY_TASK_SECTION,
                                  "data": {"path": "x", "max_length": 256}})
    assert type(job.task).__name__ == "QaConfig"
    assert (job.task.question_column, job.task.doc_stride, job.data.max_length) == ("q", 64, 256)
    # A non-default value of another task's key is a user's mistake, not a legacy dump.
    with pytest.raises(ConfigError, match="task.scheme is an option of"):
        from_dict(FinetuneJob, {"task": {**LEGACY_TASK_SECTION, "scheme": "BIOES"}})


def test_each_task_s_defaults_run_as_they_are() -> None:
    # QA windows default to run_qa.py's 384 tokens with a 128-token stride; the others
    # keep 128. A stride that cannot fit is refused before any data is read.
    assert build_config(FinetuneJob, overrides=["task.name=qa"]).data.max_length == 384
    assert build_config(FinetuneJob).data.max_length == 128
    assert build_config(FinetuneJob, overrides=["data.max_length=64"]).data.max_length == 64
    with pytest.raises(ConfigError, match=r"task.doc_stride \(128\) must be below "
                                          r"data.max_length \(128\)"):
        build_config(FinetuneJob, overrides=["task.name=qa", "data.max_length=128",
                                             "data.path=/does/not/exist"])


def test_help_lists_every_task_s_keys_with_the_tasks_that_take_them() -> None:
    helps = {key: text for key, _, text in iter_options(FinetuneJob)}
    assert helps["task.doc_stride"].startswith("[task.name=qa] ")
    assert helps["task.num_beams"].startswith("[task.name=seq2seq / sft] ")
    assert not helps["task.name"].startswith("[")
    for name in TASKS:
        section = task_config(name)
        assert {f"task.{f.name}" for f in dataclasses.fields(section)} <= set(helps)
    assert isinstance(task_config("sft"), TaskConfig)


def test_the_task_sections_load_without_torch() -> None:
    # --help and config errors must stay fast: no section module may import torch.
    code = ("import sys\nfrom lmforge.finetuning.task import TaskConfig\n"
            "assert len(TaskConfig.variant_classes()) >= 5\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
