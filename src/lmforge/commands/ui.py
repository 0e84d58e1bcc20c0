"""``lmforge ui [--root runs/]``: the local web app over a folder of runs.

The app is :mod:`lmforge.ui`'s; this module hands it what only the command layer knows (the
registry's headline metrics, ``lmforge report``'s page, the config classes of the commands
the Train tab starts) and runs it under uvicorn until interrupted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lmforge.commands.listening import run_or_explain
from lmforge.commands.registry import COMMANDS, headline_metrics
from lmforge.commands.report import build_page
from lmforge.ui.app import UiHooks, build_app
from lmforge.ui.settings import UiJob

log = logging.getLogger(__name__)

TRAIN_COMMANDS = ("finetune", "pretrain")
"""The commands the Train tab offers (each a registered command with a resumable run)."""


def ui_hooks() -> UiHooks:
    """What the UI takes from the command layer."""
    return UiHooks(headline=headline_metrics,
                   report=lambda folders: build_page([str(f) for f in folders]),
                   commands={name: COMMANDS[name].config for name in TRAIN_COMMANDS})


def ui_token(job: UiJob) -> str | None:
    """``job.token``, else ``$job.token_env`` (None when neither is set)."""
    return job.token or os.environ.get(job.token_env) or None


def run_ui(job: UiJob, resume: bool = False) -> dict[str, Any]:
    """Serve the UI over ``job.root`` until interrupted (SIGINT / SIGTERM).

    Trainings started from the page are separate processes: stopping the UI leaves them
    running, and the next UI over the same root finds them.
    """
    import uvicorn  # heavy; loaded when a server starts, not when the command is looked up

    app = build_app(job, ui_hooks(), ui_token(job))
    log.info("lmforge ui: %s on http://%s:%d", Path(job.root).resolve(), job.host, job.port)
    server = uvicorn.Server(uvicorn.Config(app, host=job.host, port=job.port,
                                           log_level="warning", access_log=False))
    run_or_explain(server, "the UI", f"{job.host}:{job.port}", "port in use?")
    return {"command": "ui", "url": f"http://{job.host}:{job.port}", "root": job.root}
