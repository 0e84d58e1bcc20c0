"""The micro-batcher on its own: grouping, size cap, failure isolation, drain on stop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from lmforge.serving.batcher import BatcherClosed, MicroBatcher, QueueFull, QueueTimeout


def _doubler(calls: list[list[int]], delay: float = 0.0):
    def fn(payloads: list[int]) -> list[int]:
        calls.append(list(payloads))
        time.sleep(delay)
        if any(p < 0 for p in payloads):
            raise ValueError("negative")
        return [2 * p for p in payloads]
    return fn


def test_concurrent_submits_share_batches_and_respect_the_cap() -> None:
    calls: list[list[int]] = []
    sizes: list[int] = []

    async def scenario() -> list[int]:
        batcher = MicroBatcher(_doubler(calls), max_batch_size=4, max_wait_ms=200,
                               on_batch=sizes.append)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return list(results)

    assert asyncio.run(scenario()) == [2 * i for i in range(10)]
    assert sorted(p for call in calls for p in call) == list(range(10))
    assert sizes == [4, 4, 2]  # full batches without waiting, the rest after max_wait


def test_max_wait_zero_runs_without_waiting_and_big_items_run_alone() -> None:
    calls: list[list[int]] = []

    async def scenario() -> tuple[int, int]:
        batcher = MicroBatcher(_doubler(calls), max_batch_size=2, max_wait_ms=0)
        await batcher.start()
        big = await batcher.submit(5, size=7)  # larger than the cap: a batch of its own
        one = await batcher.submit(1)
        await batcher.stop()
        return big, one

    assert asyncio.run(scenario()) == (10, 2)
    assert calls == [[5], [1]]


def test_a_failing_payload_fails_alone() -> None:
    calls: list[list[int]] = []

    async def scenario() -> list[object]:
        batcher = MicroBatcher(_doubler(calls), max_batch_size=8, max_wait_ms=100)
        await batcher.start()
        results = await asyncio.gather(batcher.submit(1), batcher.submit(-1),
                                       batcher.submit(3), return_exceptions=True)
        await batcher.stop()
        return list(results)

    ok1, bad, ok3 = asyncio.run(scenario())
    assert (ok1, ok3) == (2, 6)
    assert isinstance(bad, ValueError)
    assert calls[0] == [1, -1, 3]  # tried together first, then one by one
    assert calls[1:] == [[1], [-1], [3]]


def test_stop_drains_queued_work_then_refuses_new_work() -> None:
    calls: list[list[int]] = []

    async def scenario() -> tuple[list[int], bool]:
        batcher = MicroBatcher(_doubler(calls, delay=0.05), max_batch_size=2, max_wait_ms=1)
        await batcher.start()
        pending = [asyncio.create_task(batcher.submit(i)) for i in range(5)]
        await asyncio.sleep(0.01)  # all queued, the first batch is running
        await batcher.stop()
        done = [t.result() for t in pending]  # answered, not cancelled
        try:
            await batcher.submit(9)
        except BatcherClosed:
            return done, True
        return done, False

    done, refused = asyncio.run(scenario())
    assert done == [0, 2, 4, 6, 8]
    assert refused


def test_timed_out_requests_are_not_computed() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()  # holds the first batch until the second request has timed out

    def blocked(payloads: list[int]) -> list[int]:
        calls.append(list(payloads))
        assert gate.wait(30), "the test never released the first batch"
        return [2 * p for p in payloads]

    async def scenario() -> None:
        batcher = MicroBatcher(blocked, max_batch_size=1, max_wait_ms=0)
        await batcher.start()
        first = asyncio.create_task(batcher.submit(1))
        while not calls:  # the first batch is running (and blocked), however slow the machine
            await asyncio.sleep(0.005)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(batcher.submit(2), 0.02)  # queued behind the first
        gate.set()
        assert await first == 2
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [[1]]


def _held(calls: list[list[int]], gate: threading.Event):
    """A batch function that records its payloads and waits for ``gate`` (deterministic)."""
    def fn(payloads: list[int]) -> list[int]:
        calls.append(list(payloads))
        assert gate.wait(30)
        return [2 * p for p in payloads]
    return fn


async def _until(condition, timeout: float = 30.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never met"
        await asyncio.sleep(0.005)


def test_a_full_queue_refuses_at_once_and_a_cancelled_item_frees_its_slot() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()

    async def scenario() -> tuple[int, int, int]:
        batcher = MicroBatcher(_held(calls, gate), max_batch_size=1, max_wait_ms=0,
                               max_queue=2)
        await batcher.start()
        running = batcher.submit_nowait(1)
        await _until(lambda: calls == [[1]])  # taken by the worker, held
        second, third = batcher.submit_nowait(2), batcher.submit_nowait(3)
        assert batcher.depth == 2
        with pytest.raises(QueueFull) as full:
            batcher.submit_nowait(4)
        assert full.value.retry_after >= 1
        third.cancel()  # the client left
        await _until(lambda: batcher.depth == 1)
        fifth = batcher.submit_nowait(5)  # fits again
        gate.set()
        results = (await running, await second, await fifth)
        await batcher.stop()
        return results

    assert asyncio.run(scenario()) == (2, 4, 10)
    assert calls == [[1], [2], [5]]  # 3 was dropped, 4 refused: neither computed


def test_an_item_that_waits_too_long_fails_and_is_never_computed() -> None:
    calls: list[list[int]] = []
    gate = threading.Event()
    dropped: list[str] = []

    async def scenario() -> None:
        batcher = MicroBatcher(_held(calls, gate), max_batch_size=1, max_wait_ms=0,
                               timeout_s=0.2, on_drop=dropped.append)
        await batcher.start()
        running = batcher.submit_nowait(1)
        await _until(lambda: calls == [[1]])
        with pytest.raises(QueueTimeout):
            await batcher.submit(2)  # queued behind the held batch for > 0.2 s
        gate.set()
        assert await running == 2  # a started batch is answered, however long it took
        await batcher.stop()

    asyncio.run(scenario())
    assert calls == [[1]] and dropped == ["expired"]


def test_the_batch_window_counts_from_the_oldest_arrival() -> None:
    # Under load the oldest waiting item has already waited its max_wait_ms while the
    # previous batch ran: the next batch must start at once, not wait again.
    calls: list[list[int]] = []
    gate = threading.Event()

    async def scenario() -> float:
        batcher = MicroBatcher(_held(calls, gate), max_batch_size=2, max_wait_ms=2000)
        await batcher.start()
        first = [batcher.submit_nowait(1), batcher.submit_nowait(2)]  # full: runs at once
        await _until(lambda: len(calls) == 1)
        late = batcher.submit_nowait(3)
        await asyncio.sleep(2.1)  # longer than max_wait_ms
        released = time.monotonic()
        gate.set()
        await asyncio.gather(*first)
        assert await late == 6
        took = time.monotonic() - released
        await batcher.stop()
        return took

    assert asyncio.run(scenario()) < 1.5  # not another 2 s window
    assert calls == [[1, 2], [3]]
