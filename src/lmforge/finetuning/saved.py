"""Finished fine-tuning runs: the one saver and the one loader of ``run/model``.

A fine-tuned model folder holds the weights in the PEFT method's format (see
:mod:`lmforge.peft.io`), the tokenizer, and ``lmforge_task.json``: the task's typed settings
(:class:`~lmforge.finetuning.task.TaskSettings`), written and read through the config
machinery. ``lmforge finetune`` saves with :func:`save_finetuned`; predict, evaluate, serve,
export and ``lmforge.load`` read with :func:`load_finetuned` (or :func:`read_settings` when
only the settings are needed). ONNX export folders are read by
:func:`lmforge.deploy.onnx_model.load_onnx_model` with the same :func:`read_settings`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from lmforge.config import from_dict, to_dict
from lmforge.errors import ConfigError
from lmforge.finetuning.task import Task, TaskSettings, get_task
from lmforge.models.build import load_tokenizer, resolve_checkpoint
from lmforge.peft.io import load_adapted_model, save_adapted_model

TASK_FILE = "lmforge_task.json"  # task settings saved next to the model weights


def write_settings(folder: str | Path, settings: TaskSettings) -> None:
    """Write ``settings`` as ``folder/lmforge_task.json``."""
    (Path(folder) / TASK_FILE).write_text(json.dumps(to_dict(settings), indent=2,
                                                     ensure_ascii=False), encoding="utf-8")


def read_settings(folder: str | Path) -> tuple[Task, TaskSettings] | None:
    """(task, typed settings) from ``folder/lmforge_task.json``; None when there is none.

    Raises:
        ConfigError: The file names an unknown task or holds a key the task does not know
            (a newer lmforge wrote it, or it was edited by hand).
    """
    path = Path(folder) / TASK_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        raise ConfigError(f"{path} is not valid JSON; restore it or fine-tune again") from None
    task = get_task(str(data.get("task", "")))
    try:
        settings = from_dict(task.settings_class, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
    return task, settings


def save_finetuned(folder: Path, model: nn.Module, tokenizer: Any, settings: TaskSettings,
                   peft_cfg: Any, source: str, base_name: str | None = None) -> None:
    """Write a fine-tuned model folder: weights (in the PEFT method's format), tokenizer and
    task settings.

    Args:
        folder: The (temporary) ``model/`` folder (``runs.save_atomically`` swaps it in).
        model: The trained model (a ``peft.PeftModel`` for adapter methods).
        tokenizer: Its tokenizer.
        settings: The task settings.
        peft_cfg: The run's ``peft:`` section.
        source: The base checkpoint folder (adapter weights apply to it).
        base_name: The base as the user named it (a builtin name), tried when ``source``
            has moved.
    """
    save_adapted_model(model, folder, peft_cfg, source, base_name)
    tokenizer.save_pretrained(folder)
    write_settings(folder, settings)


@dataclass
class FinishedRun:
    """A fine-tuned model loaded for inference.

    Attributes:
        model_dir: The model folder (``run/model``).
        task: The task object.
        settings: Its typed settings.
        tokenizer: The saved tokenizer.
        model: The model in eval mode (a ``peft.PeftModel`` for adapter methods).
    """

    model_dir: str
    task: Task
    settings: TaskSettings
    tokenizer: Any
    model: nn.Module


def finetuned_model_dir(run: str | Path) -> str:
    """The model folder of a finetune run directory (or the folder itself)."""
    if not str(run):
        raise ConfigError("set run=RUN_DIR (a finetune run directory or its model folder)")
    model_dir = resolve_checkpoint(str(run))
    if not Path(model_dir).is_dir():
        raise ConfigError(f"run {str(run)!r} does not exist; pass a finetune run directory")
    return model_dir


def load_finetuned(run: str | Path) -> FinishedRun:
    """Load a finetune run directory (or its ``model/`` folder) for inference.

    Raises:
        ConfigError: The run is missing or is not a fine-tuned lmforge model.
    """
    model_dir = finetuned_model_dir(run)
    found = read_settings(model_dir)
    if found is None:
        raise ConfigError(f"{model_dir} is not a fine-tuned lmforge model (no {TASK_FILE}); "
                          "pass a finetune run directory")
    task, settings = found
    tokenizer = load_tokenizer(model_dir)
    model = load_adapted_model(model_dir, task, settings)  # full, peft or adapter folder
    return FinishedRun(model_dir, task, settings, tokenizer, model)
