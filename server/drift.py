"""Input drift against the training reference: PSI per feature and the two-sample KS test.

The reference is ``drift_reference.json`` (logged by training beside the model): per feature,
interior quantile bin edges with the training proportions (PSI) and a bounded sample (KS).
The server keeps a bounded window of recent inputs; ``observe`` runs on the prediction thread
(one numpy copy per batch) and ``compute`` on a background timer, so requests never wait for it.
``compute`` keeps the window counted per feature (PSI bins, and cells of the reference sample
for KS) and moves only the rows that entered and left since the last time, so an update costs
O(new rows + bins + sample), not a sort of the window, plus scipy's exact KS p-value where the
statistic is new (server/ks.py). The figures are the same as ``psi`` and
``scipy.stats.ks_2samp`` on the window (tests/unit/test_drift_stats.py).
"""

from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from server import ks
from server.drift_counts import PSI_FLOOR, WindowCounts

REFERENCE_FORMAT = "mlops-drift-reference/1"


@dataclass(frozen=True)
class FeatureReference:
    edges: NDArray[np.float64]
    expected: NDArray[np.float64]
    sample: NDArray[np.float64]


@dataclass(frozen=True)
class DriftReference:
    features: dict[str, FeatureReference]
    psi_threshold: float = 0.2
    ks_pvalue_threshold: float = 0.05

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> DriftReference:
        if doc.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"unknown drift reference format {doc.get('format')!r}")
        features = {
            name: FeatureReference(
                edges=np.asarray(spec["edges"], dtype=float),
                expected=np.asarray(spec["expected"], dtype=float),
                sample=np.asarray(spec["sample"], dtype=float),
            )
            for name, spec in doc["features"].items()
        }
        for name, ref in features.items():
            if len(ref.expected) != len(ref.edges) + 1 or len(ref.sample) == 0:
                raise ValueError(f"drift reference for {name!r} is inconsistent")
        thresholds = doc.get("thresholds", {})
        return cls(
            features=features,
            psi_threshold=float(thresholds.get("psi", 0.2)),
            ks_pvalue_threshold=float(thresholds.get("ks_pvalue", 0.05)),
        )

    @classmethod
    def load(cls, path: Path) -> DriftReference:
        return cls.from_dict(json.loads(path.read_text()))


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks: float
    ks_pvalue: float
    drifted: bool


def psi(
    expected: NDArray[np.float64], edges: NDArray[np.float64], values: NDArray[np.float64]
) -> float:
    """Population stability index of ``values`` against the expected bin proportions."""
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(expected))
    actual = np.clip(counts / max(len(values), 1), PSI_FLOOR, None)
    exp = np.clip(expected, PSI_FLOOR, None)
    return float(np.sum((actual - exp) * np.log(actual / exp)))


class DriftMonitor:
    """A bounded window of recent inputs and the drift statistics over it."""

    def __init__(
        self, reference: DriftReference, columns: list[str], window: int = 1000, min_rows: int = 50
    ) -> None:
        self.reference = reference
        self.features = [f for f in columns if f in reference.features]
        self._index = [columns.index(f) for f in self.features]
        self.window = window
        self.min_rows = min_rows
        self._buffer = np.full((window, len(self.features)), np.nan)
        self._next = 0
        self._filled = 0
        self._seen = 0
        self._computed_at_seen = -1
        self._last_input: float | None = None  # monotonic time of the newest row
        self.stale = False  # set by the runtime when no input came for too long
        self._lock = threading.Lock()  # the ring buffer: observe (prediction thread) vs compute
        # compute's own state, one compute at a time: the window as last counted, and its counts
        self._compute_lock = threading.Lock()
        self._counted = np.full_like(self._buffer, np.nan)
        self._counted_seen = 0
        refs = [reference.features[f] for f in self.features]
        self._counts = WindowCounts(
            [r.edges for r in refs], [r.expected for r in refs], [r.sample for r in refs]
        )

    @property
    def rows_in_window(self) -> int:
        return self._filled

    def seconds_since_input(self) -> float | None:
        """Seconds since the newest row arrived (None: none yet)."""
        if self._last_input is None:
            return None
        return time.monotonic() - self._last_input

    def observe(self, rows: list[list[Any]]) -> None:
        """Add a batch of rows (in the model's column order) to the window."""
        if not self.features or not rows:
            return
        try:
            block = np.asarray([[row[i] for i in self._index] for row in rows], dtype=float)
        except (TypeError, ValueError):
            return  # non-numeric features carry no PSI/KS; the prediction itself went through
        block = block[-self.window :]
        n = len(block)
        with self._lock:
            end = self._next + n
            if end <= self.window:
                self._buffer[self._next : end] = block
            else:
                split = self.window - self._next
                self._buffer[self._next :] = block[:split]
                self._buffer[: n - split] = block[split:]
            self._next = end % self.window
            self._filled = min(self.window, self._filled + n)
            self._seen += n
            self._last_input = time.monotonic()

    def compute(self, *, force: bool = False) -> list[FeatureDrift] | None:
        """Statistics over the current window; None until ``min_rows`` rows have been seen."""
        with self._compute_lock:
            with self._lock:
                if self._filled < self.min_rows or (
                    self._seen == self._computed_at_seen and not force
                ):
                    return None
                fresh = self._seen - self._counted_seen
                if 2 * fresh >= self.window:  # counting all of it again is no dearer
                    positions = None
                    entering = self._buffer.copy()
                else:
                    positions = (self._next - fresh + np.arange(fresh)) % self.window
                    entering = self._buffer[positions]
                self._counted_seen = self._computed_at_seen = self._seen
            self._count(positions, entering)
            return self._results()

    def _count(self, positions: NDArray[np.intp] | None, entering: NDArray[np.float64]) -> None:
        """Move the counts from the rows counted last time to the window's rows now."""
        if positions is None:
            self._counted = entering
            self._counts.clear()
            self._counts.move(entering[:0], entering)
        else:
            self._counts.move(self._counted[positions], entering)
            self._counted[positions] = entering

    def _results(self) -> list[FeatureDrift]:
        counts = self._counts
        psis, statistics = counts.psi(), counts.ks_statistic()
        results = []
        for j, name in enumerate(self.features):
            n = int(counts.n[j])
            if n == 0:
                continue  # no finite value of this feature in the window
            p = float(psis[j])
            if counts.sample_has_nan[j]:
                stat, pvalue = math.nan, math.nan
            else:
                figures = ks.pvalue(n, int(counts.sample_size[j]), float(statistics[j]))
                stat, pvalue = figures if figures is not None else self._scipy_ks(j, name)
            drifted = (
                p > self.reference.psi_threshold or pvalue < self.reference.ks_pvalue_threshold
            )
            results.append(FeatureDrift(name, p, stat, pvalue, drifted))
        return results

    def _scipy_ks(self, j: int, name: str) -> tuple[float, float]:
        """``ks_2samp`` itself, for a scipy whose exact count ``server.ks`` cannot reach."""
        from scipy.stats import ks_2samp

        values = self._counted[:, j]
        result = ks_2samp(values[np.isfinite(values)], self.reference.features[name].sample)
        return float(result.statistic), float(result.pvalue)
