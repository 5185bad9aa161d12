"""Delayed labels in bulk: a CSV of (request id, row index, truth) sent to a deployment's
``POST /feedback`` in batches, and the per-item verdicts added up.

The CSV has a header with ``request_id`` and ``truth`` (``index`` optional, 0 when absent;
``label`` and ``y`` are taken for ``truth``). A truth is sent as the JSON type it reads as —
an integer, else a number, else the text — unless ``truth_type`` says which; the server judges
it against the model's classes or target type.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backends.errors import InvalidInput, NotFound, Unavailable

TRUTH_COLUMNS = ("truth", "label", "y")
TRUTH_TYPES = ("auto", "int", "float", "str", "bool")
_INT = re.compile(r"[-+]?\d+")
SHOWN_PROBLEMS = 5  # item problems kept for the message (all are counted)


@dataclass
class FeedbackTotals:
    sent: int = 0
    accepted: int = 0
    relabelled: int = 0
    not_found: int = 0
    invalid: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)  # the first few items not taken, and why

    @property
    def taken(self) -> int:
        return self.accepted + self.relabelled


def read_labels(path: Path, truth_type: str = "auto") -> Iterator[dict[str, Any]]:
    """The CSV's rows as /feedback items; InvalidInput naming the line for a bad one."""
    if truth_type not in TRUTH_TYPES:
        raise InvalidInput(f"--truth-type must be one of {', '.join(TRUTH_TYPES)}")
    try:
        f = open(path, newline="", encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    with f:
        try:
            yield from _rows(csv.DictReader(f), path, truth_type)
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"{path} is not UTF-8 text: {exc.reason}") from exc
        except csv.Error as exc:
            raise InvalidInput(f"{path} is not a readable CSV: {exc}") from exc


def _rows(reader: csv.DictReader[str], path: Path, truth_type: str) -> Iterator[dict[str, Any]]:
    header = [h.strip() for h in reader.fieldnames or []]
    truth_col = next((c for c in TRUTH_COLUMNS if c in header), None)
    if "request_id" not in header or truth_col is None:
        raise InvalidInput(
            f"{path}: the header must name request_id and truth (or label), not {header}"
        )
    reader.fieldnames = header
    for row in reader:
        line = reader.line_num
        rid = (row.get("request_id") or "").strip()
        if not rid:
            raise InvalidInput(f"{path}, line {line}: no request_id")
        raw_index = (row.get("index") or "0").strip() or "0"
        if not (raw_index.isascii() and raw_index.isdigit()):
            raise InvalidInput(f"{path}, line {line}: index {raw_index!r} is not a row number")
        text = (row.get(truth_col) or "").strip()
        if not text:
            raise InvalidInput(f"{path}, line {line}: no truth")
        yield {
            "request_id": rid,
            "index": int(raw_index),
            "truth": _truth(text, truth_type, path, line),
        }


def _truth(text: str, kind: str, path: Path, line: int) -> Any:
    text = text.strip()
    try:
        if kind == "str":
            return text
        if kind == "int":
            return int(text)
        if kind == "float":
            value = float(text)
            if not math.isfinite(value):
                raise ValueError(text)
            return value
        if kind == "bool":
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
    except ValueError:
        raise InvalidInput(f"{path}, line {line}: truth {text!r} is not a {kind}") from None
    if _INT.fullmatch(text):
        return int(text)
    try:
        value = float(text)
    except ValueError:
        return text
    if not math.isfinite(value):  # "nan", "inf", 1e400: no label JSON can carry
        raise InvalidInput(f"{path}, line {line}: truth {text!r} is not a finite number")
    return value


def push_labels(
    url: str,
    labels: Iterator[dict[str, Any]],
    *,
    batch: int = 5000,
    timeout: float = 60.0,
    on_batch: Callable[[FeedbackTotals], None] | None = None,
) -> FeedbackTotals:
    """Send ``labels`` to ``url``/feedback, ``batch`` items per request."""
    import time

    import httpx

    totals = FeedbackTotals()
    started = time.perf_counter()
    target = url.rstrip("/") + "/feedback"
    with httpx.Client(timeout=timeout) as http:
        chunk: list[dict[str, Any]] = []
        for item in labels:
            chunk.append(item)
            if len(chunk) >= batch:
                _send(http, target, chunk, totals)
                chunk = []
                if on_batch is not None:
                    on_batch(totals)
        if chunk:
            _send(http, target, chunk, totals)
    totals.seconds = time.perf_counter() - started
    return totals


def _send(http: Any, target: str, chunk: list[dict[str, Any]], totals: FeedbackTotals) -> None:
    import httpx

    body = json.dumps(chunk, separators=(",", ":"), allow_nan=False).encode()
    try:
        answer = http.post(target, content=body, headers={"content-type": "application/json"})
    except httpx.HTTPError as exc:
        raise Unavailable(f"cannot send labels to {target}: {exc}") from exc
    if answer.status_code == 404 and "results" not in answer.text:
        raise NotFound(f"{target} does not take labels (404): is it an mlops model server?")
    if answer.status_code != 200:
        message = answer.text[:300]
        with contextlib.suppress(Exception):  # not our JSON error: its text, cut short
            message = answer.json()["error"]["message"]
        if answer.status_code >= 500:
            raise Unavailable(f"{target} answered {answer.status_code}: {message}")
        raise InvalidInput(f"{target} refused the labels ({answer.status_code}): {message}")
    report = answer.json()
    totals.sent += len(chunk)
    for key in ("accepted", "relabelled", "not_found", "invalid"):
        setattr(totals, key, getattr(totals, key) + int(report.get(key, 0)))
    for result in report.get("results", []):
        if len(totals.problems) >= SHOWN_PROBLEMS:
            break
        if result.get("outcome") in ("not_found", "invalid"):
            totals.problems.append(
                f"{result.get('request_id')}[{result.get('index')}]: {result.get('message')}"
            )


def deployment_url(h: Any, name: str) -> str:
    """Where deployment ``name`` answers (its router), from the engine; NotFound if none."""
    from backends.lifecycle import placement

    found = placement.get_deployment(h, name)
    if not found.port:
        raise NotFound(f"deployment {name!r} has no port to send labels to")
    return str(found.url)
