"""Trainings the UI started: detached ``lmforge`` processes and their state files.

A started run is ``python -m lmforge COMMAND --output-dir=RUN key=value ...`` (an argument
list, never a shell) in a new session, so neither a page reload nor a restart of the UI
stops it. Its state, ``RUN/ui-job.json`` (pid, argv, log file, start time, exit code once
known), is what a reloaded page or a restarted UI reads back; ``RUN/ui-job.log`` holds its
stdout and stderr.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lmforge.runs import write_json

STATE_FILE = "ui-job.json"
LOG_FILE = "ui-job.log"

_children: dict[int, subprocess.Popen[bytes]] = {}
"""Processes this UI started (reaped by :func:`job_status`, so none lingers as a zombie)."""


def read_state(run: Path) -> dict[str, Any] | None:
    """The ``ui-job.json`` of ``run`` (None: the UI did not start it, or it is unreadable)."""
    try:
        data = json.loads((run / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) ``lmforge`` process."""
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():  # Linux: a reused pid runs something else; a zombie has exited
        try:
            if b"lmforge" not in (proc / "cmdline").read_bytes():
                return False
            return (proc / "stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            return False
    return True


def job_status(run: Path, state: dict[str, Any] | None = None) -> str:
    """``running``, ``finished``, ``stopped``, ``failed`` or ``unknown`` (not the UI's run).

    A run with ``summary.json`` has finished; a started run whose process is gone without
    one failed (or was stopped, when Stop was pressed).
    """
    if (run / "summary.json").is_file():
        return "finished"
    state = state if state is not None else read_state(run)
    if state is None:
        return "unknown"
    pid = int(state.get("pid") or 0)
    if pid and _alive(pid):
        return "running"
    child = _children.pop(pid, None)
    if child is not None and "returncode" not in state:
        state["returncode"] = child.returncode
        write_json(run / STATE_FILE, state)
    return "stopped" if state.get("stop_requested") else "failed"


def start_job(run: Path, argv: list[str]) -> dict[str, Any]:
    """Start ``lmforge`` with ``argv`` (after ``python -m lmforge``) writing into ``run``.

    Args:
        run: The new run folder (created here; it must not exist).
        argv: The command and its options, e.g. ``["finetune", "--output-dir=...", ...]``.

    Returns:
        The state written to ``run/ui-job.json``.
    """
    run.mkdir(parents=True, exist_ok=False)
    command = [sys.executable, "-m", "lmforge", *argv]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(run / LOG_FILE, "wb") as log:
        child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,  # noqa: S603
                                 stderr=subprocess.STDOUT, start_new_session=True,
                                 cwd=run.parent, env=env)
    _children[child.pid] = child
    state = {"pid": child.pid, "argv": command, "log": LOG_FILE, "started": time.time()}
    write_json(run / STATE_FILE, state)
    return state


def stop_job(run: Path) -> bool:
    """Send SIGTERM to the run's process group; False when it was not running."""
    state = read_state(run)
    if state is None or job_status(run, state) != "running":
        return False
    state["stop_requested"] = True
    write_json(run / STATE_FILE, state)
    try:
        os.killpg(int(state["pid"]), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def read_log(run: Path, max_bytes: int = 16384) -> str:
    """The last ``max_bytes`` of the run's log (progress bars' carriage returns folded)."""
    try:
        with open(run / LOG_FILE, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(line.split("\r")[-1] for line in text.split("\n"))
