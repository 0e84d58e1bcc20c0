"""``lmforge serve``: serve a fine-tuned run or an ONNX export over HTTP until interrupted.

The app, the worker processes and the graceful drain are :mod:`lmforge.serving`'s.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from typing import Any

from lmforge.commands.listening import run_or_explain
from lmforge.serving.security import load_api_keys
from lmforge.serving.server import JOB_ENV, Server, build_app, is_loopback, uvicorn_options
from lmforge.serving.settings import ServeJob

log = logging.getLogger(__name__)


def run_serve(job: ServeJob, resume: bool = False) -> dict[str, Any]:
    """Serve ``job.run`` over HTTP until interrupted (SIGINT / SIGTERM).

    Args:
        job: The serve settings.
        resume: Unused (serving has no state to resume).

    Returns:
        A summary: address, task, backend and precision.
    """
    import uvicorn  # heavy; loaded when a server starts, not when the command is looked up

    keys = load_api_keys(job.api_keys, job.api_key_file, job.api_key_env)
    if not is_loopback(job.host) and not keys:
        log.warning("listening on %s without API keys: anyone who reaches this port can use "
                    "the model; set api_keys, api_key_file or $%s", job.host, job.api_key_env)
    if job.workers > 1:
        os.environ[JOB_ENV] = json.dumps(dataclasses.asdict(job))
        uvicorn.run("lmforge.serving.server:app_from_env", factory=True, workers=job.workers,
                    **uvicorn_options(job))
        return {"command": "serve", "url": f"http://{job.host}:{job.port}",
                "workers": job.workers}
    app = build_app(job)
    predictor = app.state.predictor
    log.info("lmforge serve: %s task on http://%s:%d (docs at /docs)", predictor.task_name,
             job.host, job.port)
    server = Server.make(uvicorn.Config(app, **uvicorn_options(job)), app,
                          job.drain_timeout_s)
    run_or_explain(server, "the server", f"{job.host}:{job.port}",
                   "port in use or startup failed, see the log above")
    return {"command": "serve", "url": f"http://{job.host}:{job.port}",
            "task": predictor.task_name, "backend": predictor.backend,
            "precision": predictor.precision, "stopped_by": server.stopped_by or "shutdown"}
