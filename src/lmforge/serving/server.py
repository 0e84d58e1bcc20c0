"""``lmforge serve``: load a model and run the FastAPI app under uvicorn.

Shutdown (SIGTERM / Ctrl-C): the server first *drains*: it keeps its port open, answers new
prediction requests with 503 (``Retry-After``, ``/ready`` turns 503 too) and waits up to
``drain_timeout_s`` for the requests it already admitted; then uvicorn closes the port and
the connections, the lifespan shutdown answers anything still queued, and the process exits
0 with its summary. A second signal skips the drain.

``workers > 1``: uvicorn's supervisor binds the port once and starts N processes that
accept on it; each builds the app (loads the model once) from the job passed in the
environment, drains on the SIGTERM the supervisor forwards, and the supervisor exits when
they have.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from lmforge.config import build_config
from lmforge.predictor import load_predictor
from lmforge.serving.app import create_app
from lmforge.serving.protocol import IdleTimeoutProtocol
from lmforge.serving.security import load_api_keys
from lmforge.serving.settings import ServeJob

log = logging.getLogger(__name__)

JOB_ENV = "LMFORGE_SERVE_JOB"  # the resolved ServeJob (JSON) handed to worker processes
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def draining_handler(app: Any, timeout_s: float,
                     exit_now: Callable[[int, Any], None]) -> Callable[[int, Any], None]:
    """A signal handler that drains ``app`` (see :meth:`Gate.drain`) and then calls
    ``exit_now`` (uvicorn's own handler, which starts its shutdown).

    Runs in the main thread, which runs the event loop; a second signal exits at once.
    """
    draining = threading.Event()

    def handler(sig: int, frame: Any) -> None:
        if draining.is_set():
            exit_now(sig, frame)
            return
        draining.set()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop yet (still loading): nothing to drain
            exit_now(sig, frame)
            return
        log.warning("%s: draining (new requests get 503) for up to %g s",
                    signal.Signals(sig).name, timeout_s)

        async def drain() -> None:
            try:
                if not await app.state.drain(timeout_s):
                    log.warning("drain_timeout_s=%g passed with requests still running",
                                timeout_s)
            finally:
                exit_now(sig, frame)

        loop.call_soon_threadsafe(lambda: loop.create_task(drain()))

    return handler


class Server:
    """Builds a ``uvicorn.Server`` that drains on a signal and then returns normally.

    uvicorn re-raises SIGTERM / SIGINT after its graceful shutdown, so the process would die
    by the signal (exit -15, or a KeyboardInterrupt); a server that drained cleanly should
    exit 0 with its summary instead.
    """

    @staticmethod
    def make(config: Any, app: Any, drain_timeout_s: float) -> Any:
        import uvicorn

        class Server(uvicorn.Server):
            stopped_by: str | None = None

            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                if threading.current_thread() is not threading.main_thread():
                    yield
                    return
                handler = draining_handler(app, drain_timeout_s, self._on_signal)
                original = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
                try:
                    yield
                finally:
                    for sig, previous in original.items():
                        signal.signal(sig, previous)

            def _on_signal(self, sig: int, frame: Any) -> None:
                self.stopped_by = signal.Signals(sig).name
                self.handle_exit(sig, frame)

        return Server(config)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_app(job: ServeJob) -> Any:
    """Load the model of ``job`` and return the FastAPI app (keys read from config/file/env)."""
    keys = load_api_keys(job.api_keys, job.api_key_file, job.api_key_env)
    predictor = load_predictor(job.run, job.backend, job.precision, job.threads)
    return create_app(predictor, job, api_keys=keys)


def app_from_env() -> Any:
    """uvicorn factory for ``workers > 1``: each worker process builds its own app.

    uvicorn calls it inside its signal capture, so the worker's SIGTERM / SIGINT handlers
    are wrapped here to drain first.
    """
    job = build_config(ServeJob, base=json.loads(os.environ[JOB_ENV]))
    app = build_app(job)
    if threading.current_thread() is threading.main_thread():
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            if callable(previous):
                signal.signal(sig, draining_handler(app, job.drain_timeout_s, previous))
    return app


def uvicorn_options(job: ServeJob) -> dict[str, Any]:
    """The uvicorn settings of a job (shared by one and many workers)."""
    return {"host": job.host, "port": job.port, "log_level": job.log_level,
            "http": IdleTimeoutProtocol,  # keep_alive_s also for connections never used
            # After the drain, only requests that outlived drain_timeout_s remain.
            "timeout_graceful_shutdown": max(int(job.drain_timeout_s), 1),
            "timeout_keep_alive": max(int(job.keep_alive_s), 1),
            # A loaded machine can delay a worker's answer to the supervisor's ping; a
            # worker is restarted only when it stays silent this long.
            "timeout_worker_healthcheck": 60,
            "access_log": job.log_level == "debug"}
