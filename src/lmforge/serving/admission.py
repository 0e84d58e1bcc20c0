"""Who gets served: readiness, draining, the bounded queue, and clients that leave.

:class:`Gate` stands between a prediction route and the :class:`MicroBatcher`. A request is
refused with 503 before any work when the model is not ready, the server is draining
(SIGTERM) or the queue is full; once admitted, it waits for its batch while watching its
connection, and a client that disconnects first takes its item out of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException

from lmforge.serving.batcher import BatcherClosed, MicroBatcher, QueueFull, QueueTimeout
from lmforge.serving.errors import LimitExceeded, Unavailable
from lmforge.serving.metrics import ServerMetrics


class ClientGone(Exception):
    """The client disconnected before its answer was ready (nothing can be sent)."""


@dataclass
class ServeState:
    """What the routes and ``/ready`` need to know about the server's life."""

    ready: bool = False
    error: str | None = None
    draining: bool = False
    admitted: int = 0  # prediction requests admitted and not yet answered

    @property
    def status(self) -> str:
        """``ready``, ``draining``, ``failed`` or ``loading``."""
        if self.draining:
            return "draining"
        if self.ready:
            return "ready"
        return "failed" if self.error else "loading"


async def _disconnect(receive: Callable[[], Awaitable[dict[str, Any]]]) -> None:
    # Once the body is read, the only message left on an HTTP connection is the disconnect.
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(future: asyncio.Future[Any],
                           receive: Callable[[], Awaitable[dict[str, Any]]]) -> Any:
    """The result of ``future``; if the client disconnects first, cancel it and raise
    :class:`ClientGone`."""
    watcher = asyncio.ensure_future(_disconnect(receive))
    try:
        await asyncio.wait((future, watcher), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        future.cancel()
        watcher.cancel()
        raise
    if future.done():
        watcher.cancel()
        return future.result()
    future.cancel()  # a queued item is dropped; a running batch's result is discarded
    raise ClientGone


class Gate:
    """Admission and waiting for the batched prediction routes.

    Args:
        batcher: The started :class:`MicroBatcher`.
        state: The server's :class:`ServeState`.
        metrics: Where refusals are counted.
        count_tokens: Tokens of a text (for ``max_input_tokens``).
        max_input_tokens: The token limit per input (None: off).
    """

    def __init__(self, batcher: MicroBatcher, state: ServeState, metrics: ServerMetrics,
                 count_tokens: Callable[[str], int], max_input_tokens: int | None) -> None:
        self.batcher = batcher
        self.state = state
        self.metrics = metrics
        self.count_tokens = count_tokens
        self.max_input_tokens = max_input_tokens

    def check_tokens(self, texts: list[str]) -> None:
        """422 when a text is over ``max_input_tokens``."""
        if self.max_input_tokens is None:
            return
        for text in texts:
            n = self.count_tokens(text)
            if n > self.max_input_tokens:
                raise LimitExceeded(f"an input has {n} tokens; the limit is max_input_tokens="
                                    f"{self.max_input_tokens}", "max_input_tokens")

    def admit(self) -> None:
        """503 unless the server is ready and not draining."""
        if self.state.draining or self.batcher.closed:
            self.metrics.rejected.labels("draining").inc()
            raise Unavailable("the server is shutting down; retry on another instance", 5,
                              close=True)
        if not self.state.ready:
            self.metrics.rejected.labels("not_ready").inc()
            raise Unavailable("the model is not ready yet; poll /ready", 1)

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """Count an admitted request until it is answered (the drain waits for them)."""
        self.admit()
        self.state.admitted += 1
        try:
            yield
        finally:
            self.state.admitted -= 1

    async def run(self, receive: Callable[[], Awaitable[dict[str, Any]]],
                  records: list[dict[str, Any]], top_k: int) -> list[dict[str, Any]]:
        """The prediction rows of ``records`` from a shared forward pass.

        Raises:
            Unavailable: Not ready, draining, or the queue is full (503).
            HTTPException: 504 when it waited ``request_timeout_s`` in the queue.
            ClientGone: The client disconnected while waiting.
        """
        with self.admitted():
            try:
                future = self.batcher.submit_nowait((records, top_k), len(records))
            except QueueFull as err:
                self.metrics.rejected.labels("queue_full").inc()
                raise Unavailable(f"overloaded: {err}; retry after {err.retry_after} s",
                                  err.retry_after) from None
            except BatcherClosed:
                self.metrics.rejected.labels("draining").inc()
                raise Unavailable("the server is shutting down", 5, close=True) from None
            try:
                return await until_disconnect(future, receive)
            except QueueTimeout as err:
                raise HTTPException(504, f"{err}; retry later or raise request_timeout_s"
                                    ) from None

    async def drain(self, timeout_s: float) -> bool:
        """Refuse new requests, wait for the admitted ones (at most ``timeout_s``).

        Returns:
            True when every admitted request was answered in time.
        """
        self.state.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while (self.state.admitted or self.batcher.depth) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        return not self.state.admitted
