"""Adaptive micro-batching: concurrent requests share one ``predict`` call.

Requests queue while the model is busy; when it is free, everything waiting (up to
``max_batch_rows``) goes in one call. With one client nothing waits (``max_wait`` defaults to
0), so a lone request pays no batching delay; under load, batches grow by themselves. A tree
ensemble costs about the same for 1 row as for 500, which is where the throughput comes from.

Each caller gets back exactly its own rows' predictions, in order. If a combined call fails,
each request is retried alone, so one caller's bad rows never fail the others'.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[list[list[Any]]], Sequence[Any]]


class Overloaded(Exception):
    """The queue is full; the caller should back off (HTTP 503)."""


class BatchTimeout(Exception):
    """The request waited longer than its deadline (HTTP 503)."""


@dataclass
class _Item:
    rows: list[list[Any]]
    future: asyncio.Future[list[Any]]
    enqueued: float = field(default_factory=time.monotonic)


class MicroBatcher:
    """Coalesce concurrent ``submit`` calls into batched calls of ``predict`` on a worker thread."""

    def __init__(
        self,
        predict: PredictFn,
        *,
        max_batch_rows: int = 256,
        max_wait: float = 0.0,
        max_queue_rows: int = 10_000,
        timeout: float = 30.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch_rows < 1 or max_queue_rows < 1:
            raise ValueError("max_batch_rows and max_queue_rows must be at least 1")
        self._predict = predict
        self.max_batch_rows = max_batch_rows
        self.max_wait = max_wait
        self.max_queue_rows = max_queue_rows
        self.timeout = timeout
        self._on_batch = on_batch
        self._queue: deque[_Item] = deque()
        self._queued_rows = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self._in_flight = 0
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    @property
    def pending(self) -> int:
        """Requests queued or being predicted."""
        return len(self._queue) + self._in_flight

    async def submit(self, rows: list[list[Any]]) -> list[Any]:
        """Predict ``rows``; returns one prediction per row, in order.

        A request larger than a batch goes in batch-sized parts, each queued only when the one
        before is done: small requests that arrive meanwhile queue between its parts instead of
        waiting behind all of it. Its deadline covers all its parts.
        """
        if len(rows) <= self.max_batch_rows:
            return await self._submit(rows, self.timeout)
        deadline = time.monotonic() + self.timeout
        out: list[Any] = []
        for start in range(0, len(rows), self.max_batch_rows):
            left = deadline - time.monotonic()
            if left <= 0:
                raise BatchTimeout(f"prediction took longer than {self.timeout:g}s")
            out += await self._submit(rows[start : start + self.max_batch_rows], left)
        return out

    async def _submit(self, rows: list[list[Any]], timeout: float) -> list[Any]:
        if self._closing:
            raise Overloaded("the server is shutting down")
        # An empty queue takes any request (the body limit bounds its size); a busy one
        # refuses what would push it past the bound, so callers back off instead of piling up.
        if self._queued_rows and self._queued_rows + len(rows) > self.max_queue_rows:
            raise Overloaded(f"prediction queue full ({self._queued_rows} rows waiting)")
        self.start()
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(rows, future))
        self._queued_rows += len(rows)
        self._wakeup.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            future.cancel()  # if still queued, the worker skips it
            raise BatchTimeout(f"prediction took longer than {self.timeout:g}s") from None

    async def close(self) -> None:
        """Finish everything queued, then stop the worker."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = await self._collect()
            if batch:
                await self._execute(batch)

    async def _collect(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        deadline = time.monotonic() + self.max_wait
        while True:
            while self._queue and rows < self.max_batch_rows:
                head = self._queue[0]
                if batch and rows + len(head.rows) > self.max_batch_rows:
                    return batch  # the head starts the next batch
                self._queue.popleft()
                self._queued_rows -= len(head.rows)
                if head.future.done():  # timed out or cancelled while waiting
                    continue
                batch.append(head)
                rows += len(head.rows)
            remaining = deadline - time.monotonic()
            if rows >= self.max_batch_rows or remaining <= 0 or self._closing:
                return batch
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), remaining)

    async def _execute(self, batch: list[_Item]) -> None:
        loop = asyncio.get_running_loop()
        combined = [row for item in batch for row in item.rows]
        self._in_flight = len(batch)
        try:
            try:
                predictions = await loop.run_in_executor(self._executor, self._call, combined)
            except Exception as exc:
                if len(batch) == 1:
                    _settle(batch[0].future, exc=exc)
                    return
                # Isolate the culprit: retry each request on its own.
                for item in batch:
                    try:
                        alone = await loop.run_in_executor(self._executor, self._call, item.rows)
                    except Exception as item_exc:
                        _settle(item.future, exc=item_exc)
                    else:
                        _settle(item.future, result=alone)
                return
            start = 0
            for item in batch:
                end = start + len(item.rows)
                _settle(item.future, result=predictions[start:end])
                start = end
        finally:
            self._in_flight = 0

    def _call(self, rows: list[list[Any]]) -> list[Any]:
        predictions = list(self._predict(rows))
        if len(predictions) != len(rows):
            raise RuntimeError(
                f"model returned {len(predictions)} predictions for {len(rows)} rows"
            )
        if self._on_batch is not None:
            self._on_batch(len(rows))
        return predictions


def _settle(
    future: asyncio.Future[list[Any]],
    *,
    result: list[Any] | None = None,
    exc: BaseException | None = None,
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result if result is not None else [])
