"""The prediction log: what each sampled request asked and what the model answered, on disk.

One JSON object per line, one line per row, addressed as (request id, row index)::

    {"ts": 1764700000.123, "request_id": "…", "index": 0, "model": "iris", "version": "3",
     "inputs": {"sepal_length": 5.1, …}, "prediction": 0,
     "probabilities": {"0": 0.97, "1": 0.03, "2": 0.0}}

(probabilities when a classifier gives them with its prediction: the scikit-learn forests' path;
another model's class alone, rather than a second model call per request),

and, in files of their own, the labels that came back (``POST /feedback``)::

    {"ts": …, "request_id": "…", "index": 0, "truth": 0}

JSON lines rather than Parquet: a record is appended as it comes (Parquet writes a file at a
time, so the last minutes would live in memory until a rotation), a file cut short by a crash
or a full disk loses its last line and nothing before it, and pandas (``read_json(lines=True)``),
DuckDB, Spark, ``jq`` and MLflow datasets all read it with nothing installed in the image.

Written off the request path: a request only appends to a bounded queue (a full queue drops
the rows and counts them — serving never waits for a disk); a thread writes, rotates files at
``file_bytes`` and keeps the directory under ``max_bytes`` by deleting its oldest closed files
(their rows counted as dropped). Several servers may share the directory (the replicas and
versions of one deployment, across switches): each writes files of its own name, holds a lock
on the one it writes, and deletes only files no one holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("server.prediction_log")

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
_NAME = re.compile(r"^(predictions|feedback)-(\d{8}T\d{6}\d{6}Z)-([0-9a-f]{8})\.jsonl$")
RETRY_AFTER = 5.0  # seconds before a failed directory is tried again
FLUSH_EVERY = 0.25  # seconds: the longest a queued row waits for the writer
WAKE_ROWS = 2000  # or this many queued rows wake it at once


def sampled(request_id: str, rate: float) -> bool:
    """Whether a request's rows are logged: decided by its id, so a retry with the same id, the
    router and every replica decide alike (as Databricks' inference tables sample)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    return zlib.crc32(request_id.encode()) < rate * 2**32


@dataclass
class _Entry:
    kind: str  # PREDICTIONS or FEEDBACK
    lines: Callable[[], list[bytes]]  # built in the writer thread, not on the request path
    rows: int


class PredictionLog:
    """Append-only, rotated, size-capped JSON-lines files in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        sample: float = 1.0,
        file_bytes: int = 16 * 1024 * 1024,
        max_bytes: int = 256 * 1024 * 1024,
        queue_rows: int = 50_000,
        flush_every: float = FLUSH_EVERY,
        on_written: Callable[[str, int], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
    ) -> None:
        self.directory = directory
        self.sample = sample
        self.file_bytes = max(1024, file_bytes)
        self.max_bytes = max(self.file_bytes * 2, max_bytes)
        self.queue_rows = queue_rows
        self.flush_every = flush_every
        self._on_written = on_written or (lambda kind, n: None)
        self._on_dropped = on_dropped or (lambda reason, n: None)
        self.writer = uuid.uuid4().hex[:8]
        self._queue: deque[_Entry] = deque()
        self._queued_rows = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._open: dict[str, tuple[Any, Path]] = {}
        self._failed_at = 0.0
        self.problem = ""  # why logging is degraded ("" when it is not)

    # ------------------------------------------------------------ on the request path

    def offer_predictions(
        self,
        request_id: str,
        name: str,
        version: str,
        columns: list[str] | None,
        rows: list[list[Any]],
        predictions: list[Any],
        *,
        probabilities: list[Any] | None = None,
        classes: list[Any] | None = None,
    ) -> bool:
        """Queue a request's rows (when sampled); whether they were taken. Never blocks.
        ``probabilities``: per row, a classifier's class probabilities in ``classes`` order
        (or None), logged as ``{"class": p}``."""
        if not sampled(request_id, self.sample):
            return False
        stamp = time.time()

        def lines() -> list[bytes]:
            out = []
            for index, (row, answer) in enumerate(zip(rows, predictions, strict=False)):
                inputs: Any = dict(zip(columns, row, strict=False)) if columns else row
                record = {
                    "ts": stamp,
                    "request_id": request_id,
                    "index": index,
                    "model": name,
                    "version": version,
                    "inputs": inputs,
                    "prediction": answer,
                }
                proba = probabilities[index] if probabilities else None
                if proba is not None and classes and len(classes) == len(proba):
                    record["probabilities"] = {
                        str(c): round(p, 6) for c, p in zip(classes, proba, strict=True)
                    }
                out.append(_dumps(record))
            return out

        return self._put(_Entry(PREDICTIONS, lines, len(rows)))

    def offer_feedback(self, labels: list[tuple[str, int, Any]]) -> bool:
        """Queue labels (request id, row index, truth) that were accepted."""
        stamp = time.time()

        def lines() -> list[bytes]:
            return [
                _dumps({"ts": stamp, "request_id": rid, "index": index, "truth": truth})
                for rid, index, truth in labels
            ]

        return self._put(_Entry(FEEDBACK, lines, len(labels)))

    def _put(self, entry: _Entry) -> bool:
        with self._lock:
            # An empty queue takes any request (the body limit bounds it), a busy one no more
            # than the bound.
            if self._queued_rows and self._queued_rows + entry.rows > self.queue_rows:
                dropped = True
            else:
                dropped = False
                self._queue.append(entry)
                self._queued_rows += entry.rows
        if dropped:
            self._on_dropped("queue_full", entry.rows)
            return False
        if self._queued_rows >= WAKE_ROWS:
            self._wake.set()  # else the writer comes by itself within FLUSH_EVERY
        return True

    # ------------------------------------------------------------ the writer thread

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Write what is queued (within ``timeout``), then close the files."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close_all()

    @property
    def status(self) -> str:
        return f"degraded: {self.problem}" if self.problem else "ok"

    def _run(self) -> None:
        while True:
            # Woken by a full batch or the clock, not by each request: one write of many rows
            # costs the serving threads less GIL and fewer switches than many of one (this
            # took the throughput with the log from 87 % to over 90 % of without it).
            self._wake.wait(self.flush_every)
            self._wake.clear()
            with self._lock:
                batch = list(self._queue)
                self._queue.clear()
                self._queued_rows = 0
            if batch:
                self._write(batch)
            elif self._stopping:
                return

    def _write(self, batch: list[_Entry]) -> None:
        for kind in (PREDICTIONS, FEEDBACK):
            entries = [e for e in batch if e.kind == kind]
            if not entries:
                continue
            rows = sum(e.rows for e in entries)
            if self.problem and time.monotonic() - self._failed_at < RETRY_AFTER:
                self._on_dropped("write_error", rows)
                continue
            chunks: list[bytes] = []
            for entry in entries:
                try:
                    chunks.extend(entry.lines())
                except Exception:  # a value json cannot write: that entry only
                    log.exception("a prediction log entry could not be written")
                    self._on_dropped("unserializable", entry.rows)
                    rows -= entry.rows
            if not chunks:
                continue
            try:
                handle = self._file(kind)
                view = memoryview(b"".join(chunks))
                while view:  # an unbuffered file may take part of it (a disk filling up)
                    view = view[handle.write(view) or 0 :]
            except OSError as exc:
                # A full or read-only volume: serving goes on, the rows are counted, /ready
                # says why, and the directory is tried again in a few seconds.
                self._fail(exc)
                self._on_dropped("write_error", rows)
                continue
            if self.problem:
                log.info("prediction log writes again to %s", self.directory)
                self.problem = ""
            self._on_written(kind, rows)

    def _fail(self, exc: OSError) -> None:
        if not self.problem:
            log.warning("prediction log degraded: %s", exc)
        self.problem = f"cannot write to {self.directory}: {exc.strerror or exc}"
        self._failed_at = time.monotonic()
        paths = [path for _, path in self._open.values()]
        self._close_all()
        for path in paths:  # a file the failure left empty is no record: not one per retry
            with contextlib.suppress(OSError):
                if path.stat().st_size == 0:
                    path.unlink()
        if getattr(exc, "errno", None) == 28:  # ENOSPC: make room as the cap would
            with contextlib.suppress(OSError):
                self._enforce_cap(to=self.max_bytes // 2)

    def _file(self, kind: str) -> Any:
        current = self._open.get(kind)
        if current is not None:
            handle, path = current
            if handle.tell() < self.file_bytes:
                return handle
            self._close(kind)  # rotated: the next write starts a new file
            self._enforce_cap()
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + f"{time.time() % 1:.6f}"[2:]
        path = self.directory / f"{kind}-{stamp}Z-{self.writer}.jsonl"
        # Unbuffered: what is written is on disk for readers (feedback, retraining) at once,
        # and a failed write fails here, not in a later flush that no entry can be blamed for.
        handle = open(path, "ab", buffering=0)  # noqa: SIM115 - kept open until rotated
        # Held while written: another writer's cap never deletes a file in use. (Without
        # locks, on some network filesystems, the cap may delete it; its rows are counted.)
        with contextlib.suppress(OSError):
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        self._open[kind] = (handle, path)
        return handle

    def _close(self, kind: str) -> None:
        handle, _ = self._open.pop(kind)
        with contextlib.suppress(OSError):
            handle.close()

    def _close_all(self) -> None:
        for kind in list(self._open):
            self._close(kind)

    def _enforce_cap(self, to: int | None = None) -> None:
        """Delete the oldest closed files until the directory is under ``max_bytes`` (or
        ``to``): predictions first, by when they were last written; labels only after them
        (they are small, and a label file stays open for a server's whole life, so it is
        older by name than the predictions it labels)."""
        limit = self.max_bytes if to is None else to
        every = log_files(self.directory)
        total = sum(_size(p) for p in every)

        def age(path: Path) -> tuple[bool, float]:
            try:
                written = path.stat().st_mtime
            except OSError:
                written = 0.0
            return (path.name.startswith(FEEDBACK), written)

        files = sorted(every, key=age)
        mine = {path for _, path in self._open.values()}
        for path in files:
            if total <= limit:
                return
            if path in mine or _in_use(path):
                continue
            size = _size(path)
            rows = count_lines(path)
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # another writer's cap took it first
            except OSError as exc:
                self._fail(exc)
                return
            total -= size
            kind = path.name.split("-")[0]
            self._on_dropped("size_cap" if kind == PREDICTIONS else "size_cap_feedback", rows)


def log_files(directory: Path, kind: str | None = None) -> list[Path]:
    """The log's files in ``directory`` (oldest first by name), of one kind or both."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = [
        directory / n
        for n in names
        if (m := _NAME.match(n)) is not None and (kind is None or m.group(1) == kind)
    ]
    return sorted(found, key=lambda p: p.name.split("-")[1])


def read_records(directory: Path, kind: str) -> Iterator[dict[str, Any]]:
    """Every record of one kind, oldest file first."""
    for path in log_files(directory, kind):
        yield from file_records(path)


def file_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of one file; a line cut short (a crash, a full disk) is skipped."""
    try:
        with open(path, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    yield record
    except OSError:
        return


def _dumps(record: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    except ValueError:  # a missing value (NaN) or an infinity: null, which every reader takes
        text = json.dumps(_finite(record), separators=(",", ":"), allow_nan=False)
    return text.encode() + b"\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value - value == 0 else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def _in_use(path: Path) -> bool:
    """Whether another writer holds ``path`` (its shared lock refuses ours)."""
    try:
        with open(path, "rb") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return False
    except OSError:
        return False
