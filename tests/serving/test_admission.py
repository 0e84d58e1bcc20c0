"""Admission control on a tiny classifier: a full queue answers 503 at once, a client that
leaves drops its queued item, a draining server refuses new work and finishes old work.

Forward passes are held on an event (``Gated``), so queues are built deterministically, not
by timing.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx
import pytest

from lmforge.predictor import Predictor
from lmforge.serving import ServeJob, create_app, load_predictor
from tests.serving.conftest import Gated, live_server, raw_request, read_reply


@pytest.fixture(scope="module")
def predictor(cls_run: Path) -> Predictor:
    return load_predictor(str(cls_run), precision="fp32")


def _metric(text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{re.escape(name)}(?:{{.*}})? (\S+)$", text,
                                            re.M))


async def _ready(client: httpx.AsyncClient) -> None:
    while (await client.get("/ready")).status_code != 200:
        await asyncio.sleep(0.02)


async def _until(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.01)


def test_a_full_queue_answers_503_at_once_and_the_admitted_work_finishes(
        predictor: Predictor) -> None:
    gated = Gated(predictor)
    app = create_app(gated.predictor, ServeJob(max_batch_size=1, max_wait_ms=0, max_queue=2),
                     api_keys=[])

    async def scenario() -> tuple[list[httpx.Response], httpx.Response, str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await _ready(client)
                first = asyncio.ensure_future(client.post("/classify", json={"text": "good"}))
                await _until(gated.started.is_set)  # the first batch runs (held)
                queued = [asyncio.ensure_future(client.post("/classify", json={"text": t}))
                          for t in ("bad", "great")]
                await _until(lambda: app.state.batcher.depth == 2)
                t0 = time.monotonic()
                refused = await client.post("/classify", json={"text": "lovely"})
                assert time.monotonic() - t0 < 5  # refused without waiting for the model
                gated.open()
                answered = [await first] + [await q for q in queued]
                return answered, refused, (await client.get("/metrics")).text

    answered, refused, metrics = asyncio.run(scenario())
    assert [r.status_code for r in answered] == [200, 200, 200]
    assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
    # Refused by the load shedder before its body was read (the queue bound is checked
    # there too), so the route's own queue_full refusal never ran.
    assert "overloaded" in refused.json()["detail"]
    assert _metric(metrics, 'lmforge_rejected_total{reason="overloaded"}') == 1
    assert _metric(metrics, 'lmforge_rejected_total{reason="queue_full"}') == 0
    assert gated.texts == [["good"], ["bad"], ["great"]]  # the refused one never ran


def test_a_client_that_disconnects_frees_its_slot_and_is_not_computed(
        predictor: Predictor) -> None:
    gated = Gated(predictor)
    app = create_app(gated.predictor, ServeJob(max_batch_size=1, max_wait_ms=0, max_queue=1),
                     api_keys=[])
    with live_server(app) as port:
        deadline = time.monotonic() + 30
        while app.state.status.status != "ready":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        first = socket.create_connection(("127.0.0.1", port))
        first.sendall(raw_request("/classify", b'{"text": "good"}'))
        assert gated.started.wait(30)
        leaver = socket.create_connection(("127.0.0.1", port))
        leaver.sendall(raw_request("/classify", b'{"text": "never mind"}'))
        deadline = time.monotonic() + 30
        while app.state.batcher.depth != 1:  # queued behind the held batch
            assert time.monotonic() < deadline
            time.sleep(0.01)
        leaver.close()
        while app.state.batcher.depth != 0:  # its slot is free before any batch ran
            assert time.monotonic() < deadline
            time.sleep(0.01)
        # With max_queue=1 a new request fits again.
        third = socket.create_connection(("127.0.0.1", port))
        third.sendall(raw_request("/classify", b'{"text": "great"}'))
        while app.state.batcher.depth != 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        gated.open()
        for sock in (first, third):
            assert read_reply(sock)[0] == 200
            sock.close()
        metrics = app.state.metrics.render()[0].decode()
    assert gated.texts == [["good"], ["great"]]  # "never mind" was dropped, not computed
    assert _metric(metrics, 'lmforge_dropped_total{reason="cancelled"}') == 1


def test_drain_refuses_new_requests_and_waits_for_admitted_ones(predictor: Predictor) -> None:
    gated = Gated(predictor)
    app = create_app(gated.predictor, ServeJob(max_wait_ms=0), api_keys=[])

    async def scenario() -> tuple[httpx.Response, httpx.Response, bool, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                await _ready(client)
                admitted = asyncio.ensure_future(client.post("/classify",
                                                             json={"text": "good"}))
                await _until(gated.started.is_set)
                drain = asyncio.ensure_future(app.state.drain(30))
                await asyncio.sleep(0.05)
                assert not drain.done()  # waits for the admitted request
                refused = await client.post("/classify", json={"text": "bad"})
                ready = await client.get("/ready")
                gated.open()
                return await admitted, refused, await drain, ready

    admitted, refused, drained, ready = asyncio.run(scenario())
    assert admitted.status_code == 200
    assert refused.status_code == 503 and refused.headers["connection"] == "close"
    assert "shutting down" in refused.json()["detail"] and refused.headers["retry-after"]
    assert drained
    assert ready.status_code == 503 and ready.json()["status"] == "draining"
    assert gated.texts == [["good"]]
