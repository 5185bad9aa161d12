"""Training data from real traffic: the rows of a prediction log whose labels came back.

The log (``server/prediction_log.py``: JSON lines, one row per line, labels in files of their
own) is joined on (request id, row index), the later label of a row winning, and split into a
training set and a held-out set by a hash of that address — the same row always falls on the
same side, whichever machine splits it. Both are CSV files with the logged feature columns and
``target``, what the MLflow Project trains on (it records the file as a dataset input with its
digest); the window of log time they cover is kept beside them for the run's tags.
"""

from __future__ import annotations

import csv
import json
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.errors import InvalidInput

MIN_ROWS = 30  # fewer labelled rows train nothing worth a gate
TARGET = "target"


@dataclass(frozen=True)
class LoggedSets:
    train: Path
    holdout: Path
    rows: int  # labelled rows in both sets
    holdout_rows: int
    first: float  # log time (unix seconds) of the oldest row used, and of the newest
    last: float
    versions: tuple[str, ...]  # the model versions that answered them

    def tags(self) -> dict[str, str]:
        """What the retraining run records about the log it trained on."""

        def iso(t: float) -> str:
            return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds")

        return {
            "mlops.retrain.source": "prediction-log",
            "mlops.retrain.log_window": f"{iso(self.first)}/{iso(self.last)}",
            "mlops.retrain.log_rows": str(self.rows),
            "mlops.retrain.log_holdout_rows": str(self.holdout_rows),
            "mlops.retrain.log_versions": ",".join(self.versions),
        }


def _records(directory: Path, kind: str) -> Iterator[dict[str, Any]]:
    try:
        names = sorted(n for n in os.listdir(directory) if n.startswith(f"{kind}-"))
    except OSError as exc:
        raise InvalidInput(f"cannot read the prediction log in {directory}: {exc}") from exc
    for name in names:
        if not name.endswith(".jsonl"):
            continue
        with open(directory / name, "rb") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # a line cut short by a crash or a full disk
                if isinstance(record, dict):
                    yield record


def training_sets(
    directory: Path, into: Path, *, holdout: float = 0.2, min_rows: int = MIN_ROWS
) -> LoggedSets:
    """Join the log in ``directory`` with its labels and write ``into``/train.csv and
    ``into``/holdout.csv; InvalidInput when too few rows are labelled."""
    truths: dict[tuple[str, int], Any] = {}
    labelled_at: dict[tuple[str, int], float] = {}
    for record in _records(directory, "feedback"):
        rid, index = record.get("request_id"), record.get("index")
        if isinstance(rid, str) and isinstance(index, int) and "truth" in record:
            ts = record.get("ts")
            when = float(ts) if isinstance(ts, int | float) else 0.0
            if when >= labelled_at.get((rid, index), float("-inf")):  # the later label wins
                labelled_at[(rid, index)], truths[(rid, index)] = when, record["truth"]
    rows: dict[tuple[str, int], tuple[dict[str, Any], Any, float, str]] = {}
    columns: list[str] = []
    for record in _records(directory, "predictions"):
        key = (record.get("request_id"), record.get("index"))
        inputs = record.get("inputs")
        if key not in truths or not isinstance(inputs, dict):
            continue
        for name in inputs:
            if name not in columns:
                columns.append(name)
        ts = record.get("ts")
        rows[key] = (
            inputs,
            truths[key],
            float(ts) if isinstance(ts, int | float) else 0.0,
            str(record.get("version", "")),
        )
    if len(rows) < min_rows:
        raise InvalidInput(
            f"the prediction log in {directory} has {len(rows)} labelled rows with named "
            f"columns; at least {min_rows} are needed to retrain (send labels with "
            "`mlops feedback push`)"
        )
    into.mkdir(parents=True, exist_ok=True)
    train, held = into / "train.csv", into / "holdout.csv"
    counts = {train: 0, held: 0}
    with train.open("w", newline="") as t, held.open("w", newline="") as h:
        writers = {train: csv.writer(t), held: csv.writer(h)}
        for w in writers.values():
            w.writerow([*columns, TARGET])
        for (rid, index), (inputs, truth, _, _) in rows.items():
            side = held if zlib.crc32(f"{rid}:{index}".encode()) % 1000 < holdout * 1000 else train
            writers[side].writerow([*(inputs.get(c) for c in columns), truth])
            counts[side] += 1
    if not counts[held] or not counts[train]:
        raise InvalidInput(f"{len(rows)} labelled rows do not split into training and held-out")
    stamps = [ts for _, _, ts, _ in rows.values() if ts]
    return LoggedSets(
        train,
        held,
        len(rows),
        counts[held],
        min(stamps, default=0.0),
        max(stamps, default=0.0),
        tuple(sorted({v for _, _, _, v in rows.values()})),
    )


def fetch_deployment_log(h: Any, deployment: str, into: Path) -> Path:
    """The deployment's prediction log, copied out of its serving container into ``into``."""
    from backends.docker import containers

    containers.copy_prediction_log(h.docker(), deployment, into)
    return into
