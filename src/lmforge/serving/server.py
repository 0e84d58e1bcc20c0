"""``lmforge serve``: load a model and run the FastAPI app under uvicorn.

Shutdown: on SIGTERM / Ctrl-C uvicorn stops accepting connections, lets in-flight requests
finish (up to ``request_timeout_s`` plus a margin), then runs the app's lifespan shutdown,
which answers everything still queued in the batcher before the process exits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

from lmforge.config import build_config
from lmforge.errors import ConfigError
from lmforge.serving.settings import ServeJob

log = logging.getLogger(__name__)

JOB_ENV = "LMFORGE_SERVE_JOB"  # the resolved ServeJob (JSON) handed to worker processes


class _Server:
    """Builds a ``uvicorn.Server`` whose graceful signal shutdown ends in a normal return.

    uvicorn re-raises SIGTERM / SIGINT after its graceful shutdown, so the process would die
    by the signal (exit -15, or a KeyboardInterrupt); a server that drained cleanly should
    exit 0 with its summary instead.
    """

    @staticmethod
    def make(config: Any) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            stopped_by: str | None = None

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handled = (signal.SIGINT, signal.SIGTERM)
                original = {sig: signal.signal(sig, self._on_signal) for sig in handled}
                try:
                    yield
                finally:
                    for sig, handler in original.items():
                        signal.signal(sig, handler)

            def _on_signal(self, sig: int, frame: Any) -> None:
                self.stopped_by = signal.Signals(sig).name
                self.handle_exit(sig, frame)

        return Server(config)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(job: ServeJob) -> Any:
    """Load the model of ``job`` and return the FastAPI app (keys read from config/file/env)."""
    from lmforge.predictor import load_predictor
    from lmforge.serving.app import create_app
    from lmforge.serving.security import load_api_keys

    keys = load_api_keys(job.api_keys, job.api_key_file, job.api_key_env)
    predictor = load_predictor(job.run, job.backend, job.precision, job.threads)
    return create_app(predictor, job, api_keys=keys)


def app_from_env() -> Any:
    """uvicorn factory for ``workers > 1``: each worker process builds its own app."""
    job = build_config(ServeJob, base=json.loads(os.environ[JOB_ENV]))
    return build_app(job)


def run_serve(job: ServeJob, resume: bool = False) -> dict[str, Any]:
    """Serve ``job.run`` over HTTP until interrupted (SIGINT / SIGTERM).

    Args:
        job: The serve settings.
        resume: Unused (serving has no state to resume).

    Returns:
        A summary: address, task, backend and precision.
    """
    import uvicorn

    from lmforge.serving.security import load_api_keys

    keys = load_api_keys(job.api_keys, job.api_key_file, job.api_key_env)
    if not _is_loopback(job.host) and not keys:
        log.warning("listening on %s without API keys: anyone who reaches this port can use "
                    "the model; set api_keys, api_key_file or $%s", job.host, job.api_key_env)
    common = {"host": job.host, "port": job.port, "log_level": job.log_level,
              "timeout_graceful_shutdown": int(job.request_timeout_s) + 5,
              "access_log": job.log_level == "debug"}
    if job.workers > 1:
        os.environ[JOB_ENV] = json.dumps(dataclasses.asdict(job))
        uvicorn.run("lmforge.serving.server:app_from_env", factory=True, workers=job.workers,
                    **common)
        return {"command": "serve", "url": f"http://{job.host}:{job.port}",
                "workers": job.workers}
    app = build_app(job)
    predictor = app.state.predictor
    log.info("lmforge serve: %s task on http://%s:%d (docs at /docs)", predictor.task_name,
             job.host, job.port)
    server = _Server.make(uvicorn.Config(app, **common))
    try:
        server.run()
    except SystemExit:  # uvicorn exits this way when it cannot bind the socket
        server.started = False
    if not server.started:
        raise ConfigError(f"the server did not start on {job.host}:{job.port} (port in use "
                          "or startup failed, see the log above); pick another port=")
    return {"command": "serve", "url": f"http://{job.host}:{job.port}",
            "task": predictor.task_name, "backend": predictor.backend,
            "precision": predictor.precision, "stopped_by": server.stopped_by or "shutdown"}
