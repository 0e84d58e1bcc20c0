"""Who gets served: readiness, draining, the bounded queue, and clients that leave.

:class:`Gate` stands between a prediction route and the :class:`MicroBatcher`. A request is
refused with 503 before any work when the model is not ready, the server is draining
(SIGTERM), the queue is full, or its answer is not expected within the latency budget;
once admitted, it waits for its batch while watching its connection, and a client that
disconnects first takes its item out of the queue.

The latency budget bounds what a client waits once admitted, whatever the offered load:
the expected wait is the queue ahead of a request at the measured throughput, plus the
generations running on the same model (each charged ``max_new_tokens`` times the measured
seconds per token while it runs, streams too), plus the request's own forward pass.
:meth:`Gate.overloaded` is the same check without the request, cheap enough for the
:class:`~lmforge.serving.shedding.LoadShedder` to run before a body is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
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
        budget_s: The latency budget: most expected seconds from admission to answer
            (None: off).
    """

    def __init__(self, batcher: MicroBatcher, state: ServeState, metrics: ServerMetrics,
                 count_tokens: Callable[[str], int], max_input_tokens: int | None,
                 budget_s: float | None = None) -> None:
        self.batcher = batcher
        self.state = state
        self.metrics = metrics
        self.count_tokens = count_tokens
        self.max_input_tokens = max_input_tokens
        self.budget_s = budget_s
        self.generations = 0  # generations admitted and not finished
        self._generation_backlog = 0.0  # expected seconds of the running generations
        self._token_s: float | None = None  # seconds per max_new_token, moving average
        self._over_budget = metrics.rejected.labels("over_budget")
        # Generations decoded together (continuous batching; 1: one after another). Set by
        # the app once the batching loop runs.
        self.generation_slots = 1

    def expected_wait(self) -> float:
        """Seconds a new request would wait for the model (0 while nothing was measured)."""
        if self.generation_slots > 1:
            # Batched decoding takes turns with other work step by step: one step's wait.
            return self.batcher.expected_wait() + (self._token_s or 0.0) * bool(
                self.generations)
        return self.batcher.expected_wait() + self._generation_backlog

    def overloaded(self) -> int:
        """0 when a new one-input request would be admitted, else its ``Retry-After``.

        The same checks as :meth:`run` makes once the body is parsed (a full queue, the
        latency budget), so that almost every refusal is the shedder's cheap one.
        """
        limit = self.batcher.max_queue
        if limit is not None and self.batcher.depth >= limit:
            return max(1, math.ceil(self.batcher.expected_wait()))
        if self.budget_s is None:
            return 0
        wait = self.expected_wait()
        over = wait > 0 and wait + self.batcher.service_time(1) > self.budget_s
        return max(1, math.ceil(wait)) if over else 0

    def _check_budget(self, own_s: float) -> None:
        """503 when the wait ahead plus ``own_s`` of own work is over the budget."""
        if self.budget_s is None:
            return
        wait = self.expected_wait()
        # A request alone is always admitted, however long its own work takes.
        if wait > 0 and wait + own_s > self.budget_s:
            self._over_budget.inc()
            raise Unavailable(f"overloaded: the expected wait ({wait:.2f} s) is over "
                              f"latency_budget_ms={self.budget_s * 1000:g}",
                              max(1, math.ceil(wait)))

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
            self._check_budget(self.batcher.service_time(len(records)))
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

    def start_generation(self, max_new_tokens: int) -> Callable[[], None]:
        """Admit a generation and charge its expected cost until the returned callable runs.

        The cost (``max_new_tokens`` at the measured seconds per token) counts in
        :meth:`expected_wait` of every later request, batched or generated, because they
        share the model; calling the returned function ends the charge and measures it.

        Raises:
            Unavailable: Over ``max_queue`` generations, or the wait ahead is over the
                latency budget (503).
        """
        limit = self.batcher.max_queue
        if limit is not None and self.generations >= limit:
            self.metrics.rejected.labels("queue_full").inc()
            raise Unavailable(f"overloaded: {self.generations} generations waiting "
                              f"(max_queue={limit})", 5)
        # A long reply is fine; waiting long before it starts is not. Batched, a generation
        # waits only when every row is taken: about until one of them ends.
        full = self.generations >= self.generation_slots > 1
        self._check_budget(self._generation_backlog / self.generations if full else 0.0)
        cost = (self._token_s or 0.0) * max_new_tokens
        self.generations += 1
        self._generation_backlog += cost
        start = time.monotonic()
        done = False

        def finish() -> None:
            nonlocal done
            if done:
                return
            done = True
            self.generations -= 1
            self._generation_backlog = max(self._generation_backlog - cost, 0.0)
            per_token = (time.monotonic() - start) / max(max_new_tokens, 1)
            self._token_s = per_token if self._token_s is None else \
                0.7 * self._token_s + 0.3 * per_token

        return finish

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
