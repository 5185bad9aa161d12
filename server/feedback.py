"""Labels back: ground truth joined to the predictions it judges, and realized model quality.

A label names a row as (request id, row index) — the id every prediction answer carries
(``request_ids.py``). The server remembers what it answered for its most recent ``max_rows``
rows (and, from the prediction log, what earlier servers of the deployment answered: a label
that comes back after a version switch is still the old version's), so a label is judged
against the version that made the prediction, never the one serving now.

Quality is realized quality over a sliding window of the latest labelled rows per model version
(NannyML's "realized performance"): accuracy and macro F1 for a classifier, MAE and RMSE for a
regressor, with the share of rows that have a label (coverage) beside it.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

CLASSIFIER = "classifier"
REGRESSOR = "regressor"

# A per-item outcome of POST /feedback.
ACCEPTED = "accepted"
RELABELLED = "relabelled"  # the row had a label already: the later one wins
NOT_FOUND = "not_found"
INVALID = "invalid"


@dataclass
class _Answered:
    version: str
    predictions: list[Any]
    labels: dict[int, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    outcome: str
    message: str = ""


class Outcomes:
    """What was predicted for recent request ids, the labels given to them, and the quality
    they add up to per version. Thread-safe: predictions are remembered from the event loop,
    labels judged there and in the loader that reads the log at start."""

    def __init__(
        self,
        task: str | None,
        classes: list[Any] | None,
        *,
        max_rows: int = 100_000,
        window: int = 1000,
    ) -> None:
        self.task = task  # CLASSIFIER, REGRESSOR or None (the model says neither)
        self.classes = classes
        self.max_rows = max_rows
        self.window = window
        self._answered: OrderedDict[str, _Answered] = OrderedDict()
        self._rows = 0
        self._rows_by_version: dict[str, int] = {}
        self._labelled_by_version: dict[str, int] = {}
        # Per version: (request id, index) → (prediction, truth), the newest last.
        self._windows: dict[str, OrderedDict[tuple[str, int], tuple[Any, Any]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ predictions

    def remember(self, request_id: str, version: str, predictions: list[Any]) -> None:
        if not predictions:
            return  # nothing to label; an entry without rows would never be forgotten
        with self._lock:
            old = self._answered.pop(request_id, None)
            if old is not None:  # a client reusing an id: the newest answer is the one judged
                self._forget(old)
            self._answered[request_id] = _Answered(version, list(predictions))
            self._rows += len(predictions)
            self._rows_by_version[version] = self._rows_by_version.get(version, 0) + len(
                predictions
            )
            while self._rows > self.max_rows and len(self._answered) > 1:
                _, oldest = self._answered.popitem(last=False)
                self._forget(oldest)

    def remember_earlier(
        self, request_id: str, version: str, predictions: list[Any], labels: dict[int, Any]
    ) -> None:
        """An answer older than every remembered one, with the labels it had (read back from
        the log, newest first): it goes in front, the first to be forgotten, and never
        displaces a newer one."""
        with self._lock:
            if request_id in self._answered or self._rows + len(predictions) > self.max_rows:
                return
            kept = {i: t for i, t in labels.items() if 0 <= i < len(predictions)}
            self._answered[request_id] = _Answered(version, list(predictions), kept)
            self._answered.move_to_end(request_id, last=False)
            self._rows += len(predictions)
            self._rows_by_version[version] = self._rows_by_version.get(version, 0) + len(
                predictions
            )
            self._labelled_by_version[version] = self._labelled_by_version.get(version, 0) + len(
                kept
            )
            window = self._windows.setdefault(version, OrderedDict())
            for index, truth in kept.items():
                if len(window) < self.window:  # older than what the window holds: behind it
                    window[(request_id, index)] = (predictions[index], truth)
                    window.move_to_end((request_id, index), last=False)

    def _forget(self, answered: _Answered) -> None:
        self._rows -= len(answered.predictions)
        v = answered.version
        self._rows_by_version[v] = self._rows_by_version.get(v, 0) - len(answered.predictions)
        self._labelled_by_version[v] = self._labelled_by_version.get(v, 0) - len(answered.labels)

    def known(self, request_id: str) -> bool:
        with self._lock:
            return request_id in self._answered

    # ------------------------------------------------------------ labels

    def judge(self, request_id: Any, index: Any, truth: Any) -> Verdict:
        """Take one label, or say why not."""
        if self.task is None:
            return Verdict(
                INVALID,
                "the model declares no target type (neither classes nor a numeric output): "
                "its quality cannot be computed",
            )
        if not isinstance(request_id, str) or not request_id:
            return Verdict(INVALID, "request_id must be a non-empty string")
        if index is None:
            index = 0
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            return Verdict(INVALID, "index must be a row number (an integer from 0)")
        problem = self._check_truth(truth)
        if problem:
            return Verdict(INVALID, problem)
        with self._lock:
            answered = self._answered.get(request_id)
            if answered is None:
                return Verdict(NOT_FOUND, f"no prediction with request id {request_id!r} here")
            if index >= len(answered.predictions):
                return Verdict(
                    NOT_FOUND,
                    f"request {request_id!r} had {len(answered.predictions)} rows; no row {index}",
                )
            again = index in answered.labels
            answered.labels[index] = truth
            v = answered.version
            if not again:
                self._labelled_by_version[v] = self._labelled_by_version.get(v, 0) + 1
            window = self._windows.setdefault(v, OrderedDict())
            key = (request_id, index)
            window.pop(key, None)
            window[key] = (answered.predictions[index], truth)
            while len(window) > self.window:
                window.popitem(last=False)
        return Verdict(RELABELLED if again else ACCEPTED)

    def _check_truth(self, truth: Any) -> str:
        if self.task == REGRESSOR:
            if isinstance(truth, bool) or not isinstance(truth, int | float):
                return f"truth must be a number for this regressor, not {_kind(truth)}"
            if not _finite(truth):
                return "truth must be a finite number"
            return ""
        if truth is None or isinstance(truth, dict | list):
            return f"truth must be one class label, not {_kind(truth)}"
        if isinstance(truth, float) and not _finite(truth):
            return "truth must be a class label, not an infinity"
        if self.classes:
            if _label(truth) not in {_label(c) for c in self.classes}:
                shown = ", ".join(repr(c) for c in self.classes[:10])
                more = ", ..." if len(self.classes) > 10 else ""
                return f"truth {truth!r} is not one of the model's classes ({shown}{more})"
        elif isinstance(truth, str) and len(truth) > 200:
            return "truth is longer than 200 characters: not a class label"
        return ""

    # ------------------------------------------------------------ quality

    def quality(self) -> dict[str, dict[str, float]]:
        """Per version: the window's metrics (only those defined for its rows)."""
        with self._lock:
            pairs = {v: list(w.values()) for v, w in self._windows.items() if w}
        out: dict[str, dict[str, float]] = {}
        for version, rows in pairs.items():
            if self.task == CLASSIFIER:
                out[version] = classification_quality(rows)
            else:
                out[version] = regression_quality(rows)
        return out

    def coverage(self) -> dict[str, float]:
        """Per version: labelled rows / rows remembered."""
        with self._lock:
            return {
                v: self._labelled_by_version.get(v, 0) / rows
                for v, rows in self._rows_by_version.items()
                if rows > 0
            }

    def window_sizes(self) -> dict[str, int]:
        with self._lock:
            return {v: len(w) for v, w in self._windows.items()}


def classification_quality(pairs: Iterable[tuple[Any, Any]]) -> dict[str, float]:
    """Accuracy and macro F1 (over the classes seen as prediction or truth), in one pass."""
    rows = [(_label(p), _label(t)) for p, t in pairs]
    if not rows:
        return {}
    true_pos: Counter[Any] = Counter()
    predicted: Counter[Any] = Counter()
    actual: Counter[Any] = Counter()
    for p, t in rows:
        predicted[p] += 1
        actual[t] += 1
        if p == t:
            true_pos[p] += 1
    classes = set(predicted) | set(actual)
    # F1 = 2tp / (2tp + fp + fn) = 2tp / (predicted + actual)
    f1s = [2 * true_pos[c] / (predicted[c] + actual[c]) for c in classes]
    return {"accuracy": sum(true_pos.values()) / len(rows), "f1_macro": sum(f1s) / len(f1s)}


def regression_quality(pairs: Iterable[tuple[Any, Any]]) -> dict[str, float]:
    errors = []
    for p, t in pairs:
        try:
            errors.append(float(p) - float(t))
        except (TypeError, ValueError):
            continue
    if not errors:
        return {}
    return {
        "mae": sum(abs(e) for e in errors) / len(errors),
        "rmse": math.sqrt(sum(e * e for e in errors) / len(errors)),
    }


def _label(value: Any) -> Any:
    # 1 and 1.0 are one class (JSON loses the difference); a string stays a string; a
    # prediction that is a record (a model answering a frame) is compared as its JSON.
    if isinstance(value, float) and _finite(value) and value.is_integer():
        return int(value)
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
