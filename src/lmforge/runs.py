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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lmforge.config import save_config

log = logging.getLogger(__name__)


def make_run_dir(output_dir: str | None, command: str, *, must_exist: bool = False) -> Path:
    """Create (or reuse) the run directory.

    Args:
        output_dir: Explicit folder, or None for ``runs/<command>-<timestamp>``.
        command: Command name used in the default folder name.
        must_exist: For ``--resume``: the folder has to be there already.

    Returns:
        The run directory path.
    """
    from lmforge.errors import ConfigError

    if output_dir is None:
        if must_exist:
            raise ConfigError("--resume needs the run to continue: pass output_dir=RUN_DIR")
        output_dir = os.path.join("runs", f"{command}-{time.strftime('%Y%m%d-%H%M%S')}")
    path = Path(output_dir)
    if must_exist and not path.is_dir():
        raise ConfigError(f"--resume: run directory {str(path)!r} does not exist")
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_json(path: str | Path, data: dict[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
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
