"""Cheap load shedding: refuse excess prediction requests before they cost anything.

Under overload most requests are refused, so what a refusal costs decides how much CPU is
left for the model. A refusal that goes through routing, body parsing, validation, an
exception handler, a JSON response and two metrics middlewares costs as much CPU as the
model spends on several inputs; 300 clients that retry at once then keep the server busy
answering 503s (measured in BENCHMARKS.md).

:class:`LoadShedder` is a pure-ASGI middleware outside everything else. For a request to
a prediction route it checks two numbers and, when either is over its bound, answers a
pre-built 503 with ``Retry-After`` without reading the body:

- the prediction requests in flight (``max_in_flight``: a connection-level concurrency
  limit; requests being parsed count too, which the batcher's queue cannot see);
- the expected wait of a new request (``overloaded()``: the queue ahead of it and the
  running generations, from measured throughput) against the latency budget.

Refusals are paced to about ``refusals_per_s``: each is held on a timer (no CPU while
held) for (refusals being held) / ``refusals_per_s`` seconds before it is sent. A client
that retries at once cannot send its next request before its refusal arrives, so however
many such clients there are, the server answers about ``refusals_per_s`` refusals a second
(N clients are each held about N / ``refusals_per_s`` s); a lone refusal is held only
1 / ``refusals_per_s`` (a load balancer learns at once to go elsewhere), and a client that honours
``Retry-After`` waits longer than its hold anyway. Refusals are counted by one counter,
nothing else (no log line, no latency histogram).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

from lmforge.serving.metrics import ASGIApp, Message, Scope

MAX_HOLD_S = 5.0  # past this a client may time out; more clients then mean more refusals
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def _refusal(retry_after: int) -> tuple[Message, Message]:
    """The two ASGI messages of a 503 (built once per ``Retry-After`` value)."""
    body = json.dumps({"detail": f"overloaded: retry after {retry_after} s",
                       "limit": "latency_budget_ms"}).encode()
    start: Message = {"type": "http.response.start", "status": 503,
                      "headers": [(b"content-type", b"application/json"),
                                  (b"content-length", str(len(body)).encode()),
                                  (b"retry-after", str(retry_after).encode())]}
    return start, {"type": "http.response.body", "body": body}


class LoadShedder:
    """Refuse prediction requests over ``max_in_flight`` or the latency budget with 503.

    Args:
        app: The ASGI app behind it.
        paths: The prediction routes (others pass through uncounted).
        max_in_flight: Most prediction requests being served at once.
        overloaded: Returns 0 when a new request fits the latency budget, else the
            ``Retry-After`` seconds to send (at least 1).
        refusals_per_s: The pace of refusals under a flood (None: each sent at once).
        on_refuse: Called once per refusal (a counter's ``inc``).
    """

    def __init__(self, app: ASGIApp, paths: set[str], max_in_flight: int,
                 overloaded: Callable[[], int], refusals_per_s: float | None = None,
                 on_refuse: Callable[[], None] | None = None) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.max_in_flight = max_in_flight
        self.overloaded = overloaded
        self.refusals_per_s = refusals_per_s
        self.on_refuse = on_refuse or (lambda: None)
        self.in_flight = 0
        self.refused = 0
        self.holding = 0  # refusals waiting to be sent
        self._messages: dict[int, tuple[Message, Message]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        retry_after = 1 if self.in_flight >= self.max_in_flight else self.overloaded()
        if retry_after:
            await self._refuse(send, retry_after)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send, retry_after: int) -> None:
        self.refused += 1
        self.on_refuse()
        messages = self._messages.get(retry_after)
        if messages is None:
            messages = self._messages.setdefault(retry_after, _refusal(retry_after))
        if self.refusals_per_s:
            # Held refusals are the clients flooding; their number over the pace is the
            # hold that makes them send about refusals_per_s requests a second together.
            self.holding += 1
            hold = min(self.holding / self.refusals_per_s, MAX_HOLD_S)
            try:
                await asyncio.sleep(hold)
            finally:
                self.holding -= 1
        # Servers read these messages, never change them, so they are shared.
        await send(messages[0])
        await send(messages[1])
