"""Run directories: one folder per command invocation (see docs/architecture.md).

``config.yaml`` (resolved config), ``metrics.jsonl``, ``summary.json``, ``checkpoints/``,
``model/``, ``tb/``, plus whatever plots or reports a command makes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lmforge.config import save_config, temporary_name
from lmforge.errors import ConfigError

log = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "step-"
"""Name prefix of the engine's checkpoint folders (``checkpoints/step-<n>``)."""

__all__ = ["CHECKPOINT_PREFIX", "is_main_process", "make_run_dir", "refuse_earlier_run",
           "save_atomically", "save_run_config", "temporary_name", "write_json"]


def make_run_dir(output_dir: str | None, command: str, *, must_exist: bool = False) -> Path:
    """Create (or reuse) the run directory; the same one on every process of a distributed run.

    Under ``torchrun`` / ``accelerate launch`` (a process group is up, as it is once the run
    built its ``Accelerator``), process 0 picks and creates the folder and sends its path to
    the others: a default name carries a timestamp, and processes started a second apart
    would otherwise disagree.

    Args:
        output_dir: Explicit folder, or None for ``runs/<command>-<timestamp>``.
        command: Command name used in the default folder name.
        must_exist: For ``--resume``: the folder has to be there already.

    Returns:
        The run directory path.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        holder: list[Any] = [None]
        if dist.get_rank() == 0:
            try:
                holder = [str(_create_run_dir(output_dir, command, must_exist))]
            except Exception as err:  # noqa: BLE001 - re-raised on every process below
                holder = [err]
        dist.broadcast_object_list(holder, src=0)
        if isinstance(holder[0], Exception):
            raise holder[0]
        return Path(holder[0])
    return _create_run_dir(output_dir, command, must_exist)


def _create_run_dir(output_dir: str | None, command: str, must_exist: bool) -> Path:
    if output_dir is None:
        if must_exist:
            raise ConfigError("--resume needs the run to continue: pass output_dir=RUN_DIR")
        output_dir = os.path.join("runs", f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = Path(output_dir)
    if must_exist and not path.is_dir():
        raise ConfigError(f"--resume: run directory {str(path)!r} does not exist")
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output directory {str(path)!r} is an existing file; pass a folder "
                          "path to --output-dir")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create output directory {str(path)!r} ({err.strerror}); "
                          "pass a writable folder to --output-dir") from None
    return path


def refuse_earlier_run(run_dir: Path, resume: bool, marks: Sequence[str] | None = None,
                       kind: str = "run") -> None:
    """Stop a new run from overwriting an earlier one in the same folder.

    Without ``--resume`` a command starts over; in a folder that already holds an earlier
    run's results it would write over them (a training run's checkpoint pruning could even
    delete the earlier checkpoints, a continual stream would reuse finished experiences). The
    `run_glue.py` scripts refuse the same way (their ``--overwrite_output_dir``); here the user
    resumes, or picks or empties another folder.

    Args:
        run_dir: The run directory from :func:`make_run_dir`.
        resume: Whether the command was asked to continue the run in ``run_dir``.
        marks: Glob patterns (relative to ``run_dir``) of what an earlier run leaves; default:
            a complete checkpoint, ``model`` or ``summary.json`` (finetune / pretrain).
        kind: What the message calls the earlier run ("continual run").

    Raises:
        ConfigError: ``run_dir`` holds an earlier run and ``resume`` is false.
    """
    if resume:
        return
    if marks is None:  # a complete checkpoint has its state.json (engine/checkpoint.py)
        marks = (f"checkpoints/{CHECKPOINT_PREFIX}*/state.json", "model", "summary.json")
    # A folder with only config.yaml (a run that stopped on bad input) may be reused.
    found = sorted({mark.split("/")[0] for mark in marks
                    if next(run_dir.glob(mark), None) is not None})
    if found:
        raise ConfigError(f"{run_dir} already holds a {kind} ({', '.join(found)}); pass "
                          "--resume to continue it, or a new or empty --output-dir to start over")


def is_main_process() -> bool:
    """True outside a distributed launch and on its global rank 0.

    Read from ``RANK`` (set by ``torchrun`` / ``accelerate launch``) because it is asked
    after a run, when accelerate's state has already been reset by ``run_scope``.
    """
    return os.environ.get("RANK", "0") == "0"


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = temporary_name(path)
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


def save_run_config(run_dir: Path, config: Any) -> None:
    """Save the resolved config as ``config.yaml`` in the run directory."""
    save_config(config, run_dir / "config.yaml")


def save_atomically(target: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp_folder)`` then swap the folder into ``target``.

    A crash during ``write`` leaves any previous ``target`` untouched.
    """
    tmp = target.with_name(f".tmp-{target.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        old = target.with_name(f".old-{target.name}")
        if old.exists():
            shutil.rmtree(old)
        os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target
