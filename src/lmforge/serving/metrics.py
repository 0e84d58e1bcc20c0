"""Prometheus metrics of the server, in a registry of its own (one per app).

A private ``CollectorRegistry`` keeps two apps in one process (tests, several models) from
clashing and leaves out the default process collectors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]],
                    Callable[[Message], Awaitable[None]]], Awaitable[None]]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    """Requests (count, latency, in flight), batches (size, seconds), the queue (depth,
    refusals, dropped items) and the event loop's lag."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("lmforge_requests", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("lmforge_request_latency_seconds",
                                 "Request latency (until the response is sent).", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("lmforge_batch_size", "Inputs per forward pass.",
                                    buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("lmforge_batch_seconds",
                                       "Seconds per forward pass (tokenizing included).",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue_depth = Gauge("lmforge_queue_depth", "Inputs waiting for a batch.",
                                 registry=self.registry)
        self.in_flight = Gauge("lmforge_requests_in_flight", "HTTP requests being served.",
                               registry=self.registry)
        self.rejected = Counter("lmforge_rejected", "Requests refused with 503 before any "
                                "work, by reason (overloaded: refused before the body was read; "
                                "over_budget, queue_full, draining, not_ready).",
                                ["reason"], registry=self.registry)
        self.dropped = Counter("lmforge_dropped", "Queued inputs never computed, by reason "
                               "(cancelled: the client left; expired: request_timeout_s).",
                               ["reason"], registry=self.registry)
        self.loop_lag = Histogram("lmforge_event_loop_lag_seconds",
                                  "How late the event loop runs a timer (starvation).",
                                  buckets=LAG_BUCKETS, registry=self.registry)
        self.model_info = Gauge("lmforge_model_info", "The served model (value 1).",
                                ["task", "backend", "precision"], registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """(Prometheus text exposition, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    async def watch_loop(self, interval: float = 0.1) -> None:
        """Observe how late a ``sleep(interval)`` wakes up, until cancelled.

        A loop busy with parsing, validation or serialization runs its timers late; this is
        the lag every request waiting on the loop pays.
        """
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(loop.time() - start - interval, 0.0))


class MetricsMiddleware:
    """ASGI middleware that counts every HTTP request and times it to the last body byte.

    The endpoint label is the matched route's path (``other`` for unknown paths), so a
    scanner probing random URLs cannot blow up the number of series.
    """

    def __init__(self, app: ASGIApp, metrics: ServerMetrics, paths: Callable[[], set[str]]
                 ) -> None:
        self.app = app
        self.metrics = metrics
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        endpoint = path if path in self.paths() else "other"
        start = time.perf_counter()
        status = 500
        self.metrics.in_flight.inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(endpoint, str(status)).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)
