"""Faces from many requests, batched into one model call: a small bounded queue, a maximum batch, a maximum wait.

A request hands its face crops to :meth:`Batcher.submit` and awaits their results. One worker task takes the
oldest waiting items, waits at most ``max_wait_s`` for the batch to fill up to ``max_batch`` (items that
arrive while the model runs are already waiting, so under load batches fill without waiting), and runs the
model function on a worker thread, so the event loop keeps accepting requests. The queue is bounded: a
submission that would overflow it raises :class:`QueueFull` at once (the API answers 503) instead of letting
memory and latency grow without limit. Items whose request gave up (timeout, disconnect) are skipped.
"""
from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Generic, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class QueueFull(Exception):
    """The batcher's queue cannot take a submission now; retry later."""


class Batcher(Generic[T, R]):
    """Run ``fn(items) -> results`` (same length, same order) on batches gathered across concurrent submitters.

    Args:
        fn: the model call; runs on one worker thread (model calls never overlap).
        max_batch: items per call.
        max_wait_s: how long the first item of a batch waits for more.
        max_queue: items waiting (not yet taken by the worker) at most.
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[R]], max_batch: int = 32, max_wait_s: float = 0.01,
                 max_queue: int = 256):
        if max_batch < 1 or max_queue < max_batch or max_wait_s < 0:
            raise ValueError(f"need max_batch >= 1, max_queue >= max_batch and max_wait_s >= 0, got {max_batch}, "
                             f"{max_queue}, {max_wait_s}")
        self.fn, self.max_batch, self.max_wait_s, self.max_queue = fn, max_batch, max_wait_s, max_queue
        self._queue: deque[tuple[T, asyncio.Future]] = deque()
        self._arrived: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.batches = 0  # model calls so far
        self.items = 0  # items through the model so far
        self.recent_sizes: deque[int] = deque(maxlen=256)  # sizes of the latest batches (bounded)

    @property
    def waiting(self) -> int:
        """Items queued and not yet taken by the worker."""
        return len(self._queue)

    def stats(self) -> dict[str, Any]:
        return {"waiting": self.waiting, "max_queue": self.max_queue, "max_batch": self.max_batch,
                "batches": self.batches, "items": self.items,
                "mean_batch": round(self.items / self.batches, 2) if self.batches else None}

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results of ``items``, in order, once the model has seen them all.

        Raises :class:`QueueFull` when fewer than ``len(items)`` places are free (nothing is queued then), and
        whatever ``fn`` raised for a batch holding one of them."""
        if not items:
            return []
        self._ensure_started()
        if len(self._queue) + len(items) > self.max_queue:
            raise QueueFull(f"{len(self._queue)} faces are waiting for the model and the queue holds "
                            f"{self.max_queue}; retry in a moment")
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._queue.extend(zip(items, futures))
        self._arrived.set()
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:
            for f in futures:  # the worker skips these
                f.cancel()
            raise

    async def close(self) -> None:
        """Stop the worker; waiting submitters get CancelledError."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for _, f in self._queue:
            f.cancel()
        self._queue.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _ensure_started(self) -> None:
        if self._task is None or self._task.done():
            self._arrived = asyncio.Event()
            self._executor = self._executor or ThreadPoolExecutor(1, thread_name_prefix="lanfer-model")
            self._task = asyncio.get_running_loop().create_task(self._work())

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
            deadline = loop.time() + self.max_wait_s
            while len(self._queue) < self.max_batch and (left := deadline - loop.time()) > 0:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch: list[tuple[T, asyncio.Future]] = []
            while self._queue and len(batch) < self.max_batch:
                item, future = self._queue.popleft()
                if not future.done():  # a cancelled request's faces are not classified
                    batch.append((item, future))
            if not batch:
                continue
            try:
                results = await loop.run_in_executor(self._executor, self.fn, [item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
            except Exception as e:  # the batch's submitters get the error; the worker carries on
                for _, future in batch:
                    if not future.done():
                        future.set_exception(e)
                continue
            self.batches += 1
            self.items += len(batch)
            self.recent_sizes.append(len(batch))
            for (_, future), result in zip(batch, results):
                if not future.done():
                    future.set_result(result)
