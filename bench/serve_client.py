"""A lean HTTP/1.1 load generator for the serving benchmarks (asyncio streams, no library).

Each virtual client holds one keep-alive connection and sends its next request when the
previous answer arrived (a closed loop). Requests are pre-encoded bytes and responses are
parsed just enough (status, Content-Length, Connection), so one generator process costs
tens of microseconds per request. httpx's pool, which ``serve_load.py`` used before, spends
milliseconds per request at 32+ connections (its pool scans every connection per request):
on a loaded 2-core machine it could not send more than about 45 requests per second even to
a server that answers at once, so it measured itself, not the server
(``--client httpx`` keeps it for comparison).

A 503 is counted and its ``Retry-After`` honoured (capped; a cap of 0 retries at once, a
client that does not back off); every other status is counted by code, and failed
connections as ``conn``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"  # loopback only


def encode(path: str, body: dict[str, Any]) -> bytes:
    """A POST request with a JSON body, as bytes."""
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[bytes, bytes], bytes]:
    """(status, lower-cased headers, body) of one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    return status, headers, body


@dataclass
class Tally:
    """What a run of clients saw."""

    latencies: list[float] = field(default_factory=list)  # seconds, 200s only
    codes: collections.Counter[str] = field(default_factory=collections.Counter)
    answers: dict[int, bytes] = field(default_factory=dict)  # request index -> 200 body

    def summary(self, wall: float, keep_latencies: bool = False) -> dict[str, Any]:
        """req/s of 200s, p50 / p99 / max latency in ms, errors by status (and, with
        ``keep_latencies``, every 200's latency in seconds, sorted)."""
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(1000 * lat[min(len(lat) - 1, int(q * len(lat)))], 1) if lat else None

        errors = {k: v for k, v in sorted(self.codes.items()) if k != "200"}
        return {"ok": len(lat), "seconds": round(wall, 2),
                "req_per_s": round(len(lat) / wall, 1) if wall else 0.0,
                "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": pct(1.0),
                "errors": sum(errors.values()), "errors_by_status": errors,
                **({"latencies": lat} if keep_latencies else {})}


async def run_clients(port: int, requests: list[bytes], concurrency: int, max_requests: int,
                      seconds: float, keep: bool = False,
                      retry_after_cap: float = 2.0,
                      keep_latencies: bool = False) -> dict[str, Any]:
    """``concurrency`` closed-loop clients over ``requests`` (cycled) for at most
    ``max_requests`` requests or ``seconds``.

    Args:
        port: The server's loopback port.
        requests: Encoded requests (see :func:`encode`), sent in turn.
        concurrency: Connections, each with one request in flight.
        max_requests: Stop after this many answered requests (any status).
        seconds: Stop after this long (in-flight requests finish).
        keep: Keep the 200 bodies by request index (accuracy checks).
        retry_after_cap: Longest wait honoured after a 503.
        keep_latencies: Also return every 200's latency in seconds (``latencies``), so that
            several slices of one cell can be merged (see serve_load.py's ``--rounds``).

    Returns:
        :meth:`Tally.summary` plus ``concurrency``.
    """
    tally = Tally()
    counter = iter(range(max_requests))
    connections = []
    for _ in range(concurrency):  # connect first: the ramp-up is not timed
        connections.append(await asyncio.open_connection(HOST, port))
    start = time.perf_counter()
    stop_at = start + seconds

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while time.perf_counter() < stop_at:
            index = next(counter, None)
            if index is None:
                break
            t0 = time.perf_counter()
            try:
                writer.write(requests[index % len(requests)])
                status, headers, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError):
                tally.codes["conn"] += 1
                writer.close()
                try:
                    reader, writer = await asyncio.open_connection(HOST, port)
                except OSError:
                    await asyncio.sleep(0.1)
                continue
            tally.codes[str(status)] += 1
            if status == 200:
                tally.latencies.append(time.perf_counter() - t0)
                if keep:
                    tally.answers[index] = body
            elif status == 503:
                wait = float(headers.get(b"retry-after", b"1") or 1)
                await asyncio.sleep(min(wait, retry_after_cap))
            if headers.get(b"connection", b"").lower() == b"close":
                writer.close()
                reader, writer = await asyncio.open_connection(HOST, port)
        writer.close()

    await asyncio.gather(*(client(r, w) for r, w in connections))
    wall = time.perf_counter() - start
    return {"concurrency": concurrency, **tally.summary(wall, keep_latencies),
            **({"answers": tally.answers} if keep else {})}


async def run_httpx(port: int, path: str, bodies: list[dict[str, Any]], concurrency: int,
                    max_requests: int, seconds: float, retry_after_cap: float = 0.0,
                    keep_latencies: bool = False) -> dict[str, Any]:
    """The same closed loop through one ``httpx.AsyncClient`` (the old generator); a 503's
    ``Retry-After`` is honoured up to ``retry_after_cap`` seconds (0: retried at once)."""
    import httpx

    tally = Tally()
    counter = iter(range(max_requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=120,
                                 limits=limits) as client:
        start = time.perf_counter()
        stop_at = start + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                index = next(counter, None)
                if index is None:
                    return
                t0 = time.perf_counter()
                try:
                    response = await client.post(path, json=bodies[index % len(bodies)])
                except httpx.HTTPError:
                    tally.codes["conn"] += 1
                    continue
                tally.codes[str(response.status_code)] += 1
                if response.status_code == 200:
                    tally.latencies.append(time.perf_counter() - t0)
                elif response.status_code == 503 and retry_after_cap > 0:
                    wait = float(response.headers.get("retry-after") or 1)
                    await asyncio.sleep(min(wait, retry_after_cap))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {"concurrency": concurrency, **tally.summary(wall, keep_latencies)}


def new_loop() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory when installed (a cheaper generator), else asyncio's."""
    try:
        import uvloop

        return uvloop.new_event_loop
    except ImportError:  # pragma: no cover
        return asyncio.new_event_loop


def run(coro: Any) -> Any:
    """Run a coroutine on a fresh loop (uvloop when installed)."""
    loop = new_loop()()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
