"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests are put on an asyncio queue; a single worker task takes the first one, then keeps
collecting until the batch holds ``max_batch_size`` inputs or ``max_wait_ms`` have passed
since that first one arrived, and runs the batch function in a worker thread (so the event
loop keeps accepting requests while the model computes). One worker means one forward pass
at a time: the model is never run by two threads at once.

A batch that raises is retried item by item, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

_STOP = object()  # queue sentinel: everything queued before it is still served


class BatcherClosed(RuntimeError):
    """The batcher is shutting down and takes no new work."""


@dataclass
class _Item:
    payload: Any
    size: int
    future: asyncio.Future[Any] = field(repr=False)


class MicroBatcher:
    """Group concurrent :meth:`submit` calls into calls of ``fn`` on lists of payloads.

    Args:
        fn: ``fn(payloads) -> results``, one result per payload, in order; runs in a thread.
        max_batch_size: Most inputs (sum of item sizes) per call of ``fn``; an item larger
            than this runs alone.
        max_wait_ms: Longest wait for more items after the first one of a batch arrived.
        on_batch: Called with the number of inputs of every batch run (metrics).
        on_queue: Called with the queue depth whenever it changes (metrics).
        executor: Thread pool for ``fn`` (default: a private one-thread pool).
    """

    def __init__(self, fn: Callable[[list[Any]], list[Any]], max_batch_size: int = 32,
                 max_wait_ms: float = 5.0, *, on_batch: Callable[[int], None] | None = None,
                 on_queue: Callable[[int], None] | None = None,
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.fn = fn
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_batch = on_batch or (lambda n: None)
        self.on_queue = on_queue or (lambda n: None)
        self._executor = executor or ThreadPoolExecutor(1, thread_name_prefix="lmforge-batch")
        self._queue: asyncio.Queue[Any] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._carry: _Item | None = None  # an item that did not fit into the last batch
        self._closed = False

    async def start(self) -> None:
        """Start the worker task (call from the running event loop)."""
        self._queue = asyncio.Queue()
        self._closed = False
        self._worker = asyncio.create_task(self._run(), name="lmforge-batcher")

    async def stop(self) -> None:
        """Refuse new work, serve everything already queued, then end the worker."""
        if self._queue is None or self._worker is None:
            return
        self._closed = True
        await self._queue.put(_STOP)
        await self._worker
        self._executor.shutdown(wait=True)

    @property
    def depth(self) -> int:
        """Items waiting (not yet in a running batch)."""
        return (self._queue.qsize() if self._queue else 0) + (self._carry is not None)

    async def submit(self, payload: Any, size: int = 1) -> Any:
        """Queue ``payload`` (``size`` inputs) and wait for its result.

        Raises:
            BatcherClosed: The batcher is stopping (the server is shutting down).
            Exception: Whatever ``fn`` raised for this payload.
        """
        if self._closed or self._queue is None:
            raise BatcherClosed("the server is shutting down")
        item = _Item(payload, max(size, 1), asyncio.get_running_loop().create_future())
        await self._queue.put(item)
        self.on_queue(self.depth)
        return await item.future

    async def _next(self, timeout: float | None) -> Any:
        """The carried-over item, else the next queued one (None after ``timeout``)."""
        assert self._queue is not None
        if self._carry is not None:
            item, self._carry = self._carry, None
            return item
        if timeout is None:
            return await self._queue.get()
        if timeout <= 0:
            return self._queue.get_nowait() if not self._queue.empty() else None
        try:
            return await asyncio.wait_for(self._queue.get(), timeout)
        except asyncio.TimeoutError:
            return None

    async def _collect(self) -> tuple[list[_Item], bool]:
        """One batch and whether the stop sentinel was reached."""
        loop = asyncio.get_running_loop()
        first = await self._next(None)
        if first is _STOP:
            return [], True
        batch, total = [first], first.size
        deadline = loop.time() + self.max_wait
        while total < self.max_batch_size:
            item = await self._next(deadline - loop.time())
            if item is None:
                break
            if item is _STOP:
                return batch, True
            if total + item.size > self.max_batch_size:
                self._carry = item
                break
            batch.append(item)
            total += item.size
        return batch, False

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        stop = False
        while not stop:
            # After the sentinel nothing is queued or carried: submit() refuses once closed.
            batch, stop = await self._collect()
            self.on_queue(self.depth)
            # Requests that timed out (future cancelled) while queued are not computed.
            live = [item for item in batch if not item.future.done()]
            if not live:
                continue
            self.on_batch(sum(item.size for item in live))
            try:
                results = await loop.run_in_executor(self._executor, self._call,
                                                     [item.payload for item in live])
            except Exception:  # noqa: BLE001 - retried one by one below
                results = None
            if results is None:
                await self._one_by_one(live)
                continue
            for item, result in zip(live, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

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
