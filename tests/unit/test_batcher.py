"""The micro-batcher: ordering, coalescing, isolation of a bad row, timeouts, back-pressure."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from server.batcher import BatchTimeout, MicroBatcher, Overloaded


class Recorder:
    """A predict function that echoes rows (x -> x * 10) and records each call's size."""

    def __init__(self, delay: float = 0.0, poison: Any = None) -> None:
        self.calls: list[int] = []
        self.delay = delay
        self.poison = poison

    def __call__(self, rows: list[list[Any]]) -> list[Any]:
        self.calls.append(len(rows))
        if self.delay:
            time.sleep(self.delay)
        if any(row[0] == self.poison for row in rows):
            raise ValueError(f"cannot predict {self.poison!r}")
        return [row[0] * 10 for row in rows]


async def test_each_caller_gets_its_own_rows_in_order() -> None:
    predict = Recorder(delay=0.01)
    batcher = MicroBatcher(predict)
    requests = [[[i], [i + 1000], [i + 2000]] for i in range(50)]
    results = await asyncio.gather(*(batcher.submit(rows) for rows in requests))
    await batcher.close()
    for rows, got in zip(requests, results, strict=True):
        assert got == [r[0] * 10 for r in rows]
    assert sum(predict.calls) == 150
    assert len(predict.calls) < 50  # concurrent callers were coalesced


async def test_a_lone_request_is_not_delayed() -> None:
    """The quickest of three lone requests after a first (which starts the executor's
    thread): a delay of the batcher's own is in every one, a stalled box in one at most."""
    batcher = MicroBatcher(Recorder(), max_wait=0.0)
    assert await batcher.submit([[0]]) == [0]
    took = []
    for i in range(1, 4):
        start = time.perf_counter()
        assert await batcher.submit([[i]]) == [10 * i]
        took.append(time.perf_counter() - start)
    assert min(took) < 0.5, took
    await batcher.close()


async def test_max_batch_rows_is_respected() -> None:
    predict = Recorder(delay=0.005)
    batcher = MicroBatcher(predict, max_batch_rows=8)
    await asyncio.gather(*(batcher.submit([[i], [i]]) for i in range(40)))
    await batcher.close()
    assert max(predict.calls) <= 8 and sum(predict.calls) == 80


async def test_max_wait_gathers_a_bigger_batch() -> None:
    predict = Recorder()
    batcher = MicroBatcher(predict, max_wait=0.05)

    async def later(i: int) -> list[Any]:
        await asyncio.sleep(0.01)
        return await batcher.submit([[i]])

    await asyncio.gather(batcher.submit([[0]]), later(1), later(2))
    await batcher.close()
    assert predict.calls == [3]


async def test_one_bad_row_fails_only_its_own_request() -> None:
    predict = Recorder(delay=0.01, poison="bad")
    batcher = MicroBatcher(predict)
    outcomes = await asyncio.gather(
        batcher.submit([[1]]),
        batcher.submit([["bad"]]),
        batcher.submit([[3], [4]]),
        return_exceptions=True,
    )
    await batcher.close()
    assert outcomes[0] == [10] and outcomes[2] == [30, 40]
    assert isinstance(outcomes[1], ValueError) and "bad" in str(outcomes[1])


async def test_timeout_raises_and_the_batcher_keeps_working() -> None:
    gate = threading.Event()

    def slow(rows: list[list[Any]]) -> list[Any]:
        gate.wait(5)
        return [r[0] for r in rows]

    batcher = MicroBatcher(slow, timeout=0.1)
    with pytest.raises(BatchTimeout):
        await batcher.submit([[1]])
    gate.set()
    batcher.timeout = 30  # the next one must succeed: no race with the woken thread
    assert await batcher.submit([[2]]) == [2]
    await batcher.close()


async def test_full_queue_is_refused_not_buffered_forever() -> None:
    gate = threading.Event()

    def blocked(rows: list[list[Any]]) -> list[Any]:
        gate.wait(5)
        return [0] * len(rows)

    batcher = MicroBatcher(blocked, max_queue_rows=4)
    first = asyncio.create_task(batcher.submit([[1]]))
    await asyncio.sleep(0.05)  # the first request is now inside predict
    queued = [asyncio.create_task(batcher.submit([[i]])) for i in range(4)]
    await asyncio.sleep(0.01)
    with pytest.raises(Overloaded):
        await batcher.submit([[99]])
    gate.set()
    assert await first == [0]
    assert [await q for q in queued] == [[0]] * 4
    await batcher.close()


async def test_close_drains_queued_requests() -> None:
    batcher = MicroBatcher(Recorder(delay=0.02))
    pending = [asyncio.create_task(batcher.submit([[i]])) for i in range(10)]
    await asyncio.sleep(0)
    await batcher.close()
    assert await asyncio.gather(*pending) == [[i * 10] for i in range(10)]
    with pytest.raises(Overloaded):
        await batcher.submit([[1]])


async def test_wrong_prediction_count_is_an_error() -> None:
    batcher = MicroBatcher(lambda rows: [1])
    with pytest.raises(RuntimeError, match="1 predictions for 2 rows"):
        await batcher.submit([[1], [2]])
    await batcher.close()


async def test_a_request_larger_than_a_batch_does_not_starve_small_ones() -> None:
    """Parts of a big request are queued one at a time: a small request sent while the first
    part is predicted is answered before the big request's last part."""
    order: list[int] = []
    first_part = threading.Event()
    proceed = threading.Event()

    def predict(rows: list[list[Any]]) -> list[Any]:
        order.append(len(rows))
        if len(order) == 1:
            first_part.set()
            proceed.wait(5)
        return [r[0] for r in rows]

    batcher = MicroBatcher(predict, max_batch_rows=10)
    big = asyncio.create_task(batcher.submit([[i] for i in range(100)]))
    await asyncio.to_thread(first_part.wait, 5)
    small = asyncio.create_task(batcher.submit([[-1]]))
    await asyncio.sleep(0.05)
    proceed.set()
    assert await small == [-1]
    assert await big == list(range(100))
    assert order[0] == 10 and 1 in order[:3]  # the small one went in right after the first part
    assert sum(order) == 101 and max(order) <= 10
    await batcher.close()
