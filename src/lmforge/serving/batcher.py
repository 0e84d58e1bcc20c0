"""Dynamic micro-batching with admission control: concurrent requests share one forward pass.

Requests wait in a bounded FIFO queue. One worker task takes the oldest one, then keeps
collecting until the batch holds ``max_batch_size`` inputs or ``max_wait_ms`` have passed
since that oldest one *arrived* (under load it has waited already, so a batch starts at
once), and runs the batch function in a worker thread: the event loop keeps accepting
requests while the model computes, and the model is never run by two threads at once.

Overload is refused early instead of queued without bound (the queue-policy idea of
Triton's dynamic batcher and of load shedding in proxies such as Envoy):

- at most ``max_queue`` inputs wait; past that :meth:`MicroBatcher.submit` raises
  :class:`QueueFull` at once (the server answers 503 with ``Retry-After``), and so it does
  when the measured drain rate says the queue would not be served within ``timeout_s``;
- an item that waited ``timeout_s`` without being started fails with :class:`QueueTimeout`
  and is never computed; once its batch runs, it is answered (the work is not wasted);
- a caller that gives up (client disconnected, its future cancelled) frees its slot at
  once, and its item is skipped, not computed.

A batch that raises is retried item by item, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new work."""


class QueueFull(RuntimeError):
    """The queue is at its limit; ``retry_after`` is a hint in seconds (at least 1)."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueTimeout(TimeoutError):
    """An item waited longer than ``timeout_s`` without being started (never computed)."""


@dataclass(eq=False)
class _Item:
    payload: Any
    size: int
    future: asyncio.Future[Any] = field(repr=False)
    arrived: float
    queued: bool = True
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class MicroBatcher:
    """Group concurrent :meth:`submit` calls into calls of ``fn`` on lists of payloads.

    Args:
        fn: ``fn(payloads) -> results``, one result per payload, in order; runs in a thread.
        max_batch_size: Most inputs (sum of item sizes) per call of ``fn``; an item larger
            than this runs alone.
        max_wait_ms: Longest wait for more items, counted from the arrival of the oldest
            item of the batch.
        max_queue: Most inputs waiting (None: unbounded); an item larger than this is
            still taken when the queue is empty.
        timeout_s: Longest wait of an item before it starts (None: no limit); also the
            bound on the expected wait above which new items are refused.
        on_batch: Called with the number of inputs of every batch run (metrics).
        on_done: Called with ``(inputs, seconds)`` after every batch (metrics).
        on_drop: Called with ``"cancelled"`` or ``"expired"`` for each item dropped from the
            queue without being computed (metrics).
        executor: Thread pool for ``fn`` (default: a private one-thread pool).
    """

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, *, max_queue: int | None = None,
                 timeout_s: float | None = None,
                 on_batch: Callable[[int], None] | None = None,
                 on_done: Callable[[int, float], None] | None = None,
                 on_drop: Callable[[str], None] | None = None,
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.timeout_s = timeout_s
        self.on_batch = on_batch or (lambda n: None)
        self.on_done = on_done or (lambda n, s: None)
        self.on_drop = on_drop or (lambda reason: None)
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="lmforge-batch")
        self._items: deque[_Item] = deque()
        self._waiting = 0  # inputs of live (not done) queued items
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        self._rate: float | None = None  # inputs per second, moving average over batches
        self._busy_until = 0.0  # expected end of the running batch (loop time)

    async def start(self) -> None:
        """Start the worker task (call from the running event loop)."""
        self._wakeup = asyncio.Event()
        self._closed = False
        self._worker = asyncio.create_task(self._run(), name="lmforge-batcher")

    async def stop(self) -> None:
        """Refuse new work, serve everything already queued, then end the worker."""
        if self._worker is None or self._wakeup is None:
            return
        self._closed = True
        self._wakeup.set()
        await self._worker
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Inputs waiting (not yet in a running batch; given-up items not counted)."""
        return self._waiting

    @property
    def closed(self) -> bool:
        """True once :meth:`stop` was called."""
        return self._closed

    def expected_wait(self) -> float:
        """Seconds until a new item would start, from the measured throughput (0 if unknown)."""
        if not self._rate:
            return 0.0
        loop = asyncio.get_running_loop()
        return max(self._busy_until - loop.time(), 0.0) + self._waiting / self._rate

    def service_time(self, size: int) -> float:
        """Expected seconds of a forward pass over ``size`` inputs (0 if unknown)."""
        return max(size, 1) / self._rate if self._rate else 0.0

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.expected_wait()))

    def submit_nowait(self, payload: Any, size: int = 1) -> asyncio.Future[Any]:
        """Queue ``payload`` (``size`` inputs); return the future of its result.

        Cancel the future to give up: the item is dropped unless its batch already runs.

        Raises:
            BatcherClosed: The batcher is stopping (the server is shutting down).
            QueueFull: The queue is at ``max_queue``, or its expected wait is over
                ``timeout_s``.
        """
        if self._closed or self._wakeup is None:
            raise BatcherClosed("the server is shutting down")
        size = max(size, 1)
        if self._waiting:
            if self.max_queue is not None and self._waiting + size > self.max_queue:
                raise QueueFull(f"the queue is full ({self._waiting} inputs waiting, "
                                f"max_queue={self.max_queue})", self._retry_after())
            if self.timeout_s is not None and self.expected_wait() > self.timeout_s:
                raise QueueFull(f"the queue would not be served within {self.timeout_s:g} s "
                                f"({self._waiting} inputs waiting)", self._retry_after())
        loop = asyncio.get_running_loop()
        item = _Item(payload, size, loop.create_future(), loop.time())
        if self.timeout_s is not None:
            item.timer = loop.call_at(item.arrived + self.timeout_s, self._expire, item)
        item.future.add_done_callback(lambda _: self._unqueue(item))
        self._items.append(item)
        self._waiting += size
        self._wakeup.set()
        return item.future

    async def submit(self, payload: Any, size: int = 1) -> Any:
        """Queue ``payload`` and wait for its result (cancelling the wait drops the item).

        Raises:
            BatcherClosed, QueueFull: See :meth:`submit_nowait`.
            QueueTimeout: It waited ``timeout_s`` without being started.
            Exception: Whatever ``fn`` raised for this payload.
        """
        return await self.submit_nowait(payload, size)

    def _unqueue(self, item: _Item) -> None:
        """Free the queue slot of an item that left the queue (taken, answered or given up)."""
        if item.timer is not None:
            item.timer.cancel()
            item.timer = None
        if item.queued:
            item.queued = False
            self._waiting -= item.size
            if item.future.cancelled():
                self.on_drop("cancelled")

    def _expire(self, item: _Item) -> None:
        if item.queued and not item.future.done():
            self.on_drop("expired")
            item.future.set_exception(QueueTimeout(
                f"waited {self.timeout_s:g} s in the queue without being served"))

    def _take(self) -> tuple[list[_Item], int]:
        """Pop live items in arrival order up to ``max_batch_size`` inputs."""
        batch: list[_Item] = []
        total = 0
        while self._items:
            item = self._items[0]
            if item.future.done():  # given up or expired while queued: never computed
                self._items.popleft()
                continue
            if batch and total + item.size > self.max_batch_size:
                break
            self._items.popleft()
            self._unqueue(item)
            batch.append(item)
            total += item.size
            if total >= self.max_batch_size:
                break
        return batch, total

    async def _collect(self) -> list[_Item]:
        """The next batch: wait for a first item, then fill until full or its wait is over."""
        assert self._wakeup is not None
        loop = asyncio.get_running_loop()
        while not self._waiting and not self._closed:
            self._wakeup.clear()
            await self._wakeup.wait()
        while self._items and self._items[0].future.done():
            self._items.popleft()
        if not self._items:
            return []
        deadline = self._items[0].arrived + self.max_wait
        batch, total = self._take()
        while total < self.max_batch_size and not self._closed:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            self._wakeup.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            more, added = self._take()
            batch.extend(more)
            total += added
        # Items may have given up while the batch filled.
        return [item for item in batch if not item.future.done()]

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            if not batch:
                if self._closed and not self._items:
                    return
                await asyncio.sleep(0)  # let the done-callbacks of given-up items run
                continue
            size = sum(item.size for item in batch)
            self.on_batch(size)
            start = loop.time()
            expected = size / self._rate if self._rate else 0.0
            self._busy_until = start + expected
            try:
                results = await loop.run_in_executor(self._executor, self._call,
                                                     [item.payload for item in batch])
            except Exception:  # noqa: BLE001 - retried one by one below
                results = None
            if results is None:
                await self._one_by_one(batch)
            else:
                for item, result in zip(batch, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
            seconds = loop.time() - start
            self._busy_until = 0.0
            self.on_done(size, seconds)
            if seconds > 0:
                rate = size / seconds
                self._rate = rate if self._rate is None else 0.7 * self._rate + 0.3 * rate

    def _call(self, payloads: list[Any]) -> list[Any]:
        results = self.fn(payloads)
        if len(results) != len(payloads):
            raise RuntimeError(f"batch function returned {len(results)} results for "
                               f"{len(payloads)} payloads")
        return results

    async def _one_by_one(self, items: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        for item in items:
            try:
                result = (await loop.run_in_executor(self._executor, self._call,
                                                     [item.payload]))[0]
            except Exception as err:  # noqa: BLE001 - handed to the waiting request
                if not item.future.done():
                    item.future.set_exception(err)
                continue
            if not item.future.done():
                item.future.set_result(result)
