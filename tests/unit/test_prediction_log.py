"""The prediction log's writer on a real directory: the queue bound, rotation, the size cap
(oldest closed files first, never one another writer holds), and files other tools read."""

from __future__ import annotations

import fcntl
import json
import math
import time
from pathlib import Path

from server.prediction_log import PredictionLog, log_files, read_records, sampled


def drops() -> tuple[dict[str, int], object]:
    seen: dict[str, int] = {}

    def count(reason: str, n: int) -> None:
        seen[reason] = seen.get(reason, 0) + n

    return seen, count


def wait_rows(directory: Path, n: int, kind: str = "predictions") -> list[dict]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = list(read_records(directory, kind))
        if len(rows) >= n:
            return rows
        time.sleep(0.02)
    raise AssertionError(f"{len(list(read_records(directory, kind)))} of {n} rows written")


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path: Path) -> None:
    seen, count = drops()
    log = PredictionLog(tmp_path, queue_rows=10, on_dropped=count)  # not started: nothing drains
    assert log.offer_predictions("a", "m", "1", None, [[1]] * 8, [0] * 8)
    assert not log.offer_predictions("b", "m", "1", None, [[1]] * 3, [0] * 3)
    assert seen == {"queue_full": 3}
    log.start()
    log.stop()
    assert [r["request_id"] for r in read_records(tmp_path, "predictions")] == ["a"] * 8


class Written:
    """Counts the rows the writer wrote, to wait on: each burst is on disk before the next."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, kind: str, n: int) -> None:
        self.rows += n

    def wait(self, rows: int) -> None:
        deadline = time.monotonic() + 60
        while self.rows < rows:
            assert time.monotonic() < deadline, f"{self.rows} of {rows} rows written"
            time.sleep(0.005)


def test_files_rotate_and_the_cap_deletes_the_oldest_closed_ones(tmp_path: Path) -> None:
    seen, count = drops()
    written = Written()
    log = PredictionLog(
        tmp_path,
        file_bytes=2048,
        max_bytes=8192,
        on_dropped=count,
        on_written=written,
        flush_every=0.01,
    )
    log.start()
    for i in range(200):
        log.offer_predictions(f"r{i}", "m", "1", ["x", "y"], [[i, 0.5]], [i % 3])
        if i % 20 == 19:
            written.wait(i + 1)  # several writes, so files fill one after another
    log.stop()
    files = log_files(tmp_path, "predictions")
    assert len(files) >= 3
    assert sum(p.stat().st_size for p in files) <= 8192 + 2048
    kept = [r["request_id"] for r in read_records(tmp_path, "predictions")]
    assert kept == [f"r{i}" for i in range(200 - len(kept), 200)]  # the newest, in order
    assert seen.get("size_cap", 0) == 200 - len(kept) > 0


def test_the_cap_never_deletes_a_file_another_writer_holds(tmp_path: Path) -> None:
    other = tmp_path / "predictions-20000101T000000000000Z-0000beef.jsonl"
    other.write_bytes(b'{"request_id":"old","index":0}\n' * 400)  # over the cap by itself
    with open(other, "ab") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_SH)
        fill(tmp_path, "r")
        assert other.exists()
    # Released: the next cap takes it (the oldest) first.
    fill(tmp_path, "s")
    assert not other.exists()


def fill(directory: Path, prefix: str) -> None:
    """100 rows in bursts of 10, each written before the next: the files rotate."""
    written = Written()
    log = PredictionLog(
        directory, file_bytes=1024, max_bytes=4096, on_written=written, flush_every=0.001
    )
    log.start()
    for i in range(100):
        log.offer_predictions(f"{prefix}{i}", "m", "1", None, [[i]], [0])
        if i % 10 == 9:
            written.wait(i + 1)
    log.stop()


def test_missing_values_are_null_and_a_cut_line_is_skipped(tmp_path: Path) -> None:
    log = PredictionLog(tmp_path)
    log.start()
    log.offer_predictions("n", "m", "1", ["a", "b"], [[math.nan, math.inf]], [1.5])
    log.offer_feedback([("n", 0, 2)])
    rows = wait_rows(tmp_path, 1)
    wait_rows(tmp_path, 1, "feedback")
    log.stop()
    assert rows[0]["inputs"] == {"a": None, "b": None}
    path = log_files(tmp_path, "predictions")[0]
    with path.open("ab") as f:
        f.write(b'{"request_id": "cut')  # a crash mid-line
    assert [r["request_id"] for r in read_records(tmp_path, "predictions")] == ["n"]
    line = path.read_bytes().splitlines()[0]
    assert json.loads(line)["prediction"] == 1.5


def test_sampling_is_decided_by_the_request_id() -> None:
    ids = [f"id-{i}" for i in range(4000)]
    share = sum(sampled(i, 0.1) for i in ids) / len(ids)
    assert 0.07 < share < 0.13
    assert [sampled(i, 0.1) for i in ids] == [sampled(i, 0.1) for i in ids]
    assert all(sampled(i, 1.0) for i in ids) and not any(sampled(i, 0.0) for i in ids)
