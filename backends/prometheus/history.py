"""The recent past of one deployment's figures, for the monitor's plots.

With Prometheus it is there already: range queries answer the last minutes at once. Without
it (the direct scrape), nobody kept the past, so ``SnapshotRecorder`` keeps the snapshots the
console takes anyway, in a bounded ring per deployment. Both answer ``MonitorHistory``.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from backends.prometheus.queries import Scope
from backends.records import DeploymentHealth, MonitorHistory, MonitorSnapshot, Series

if TYPE_CHECKING:
    from backends.prometheus.prometheus_source import PrometheusSource
    from backends.prometheus.sources import HistoryKind

__all__ = ["FIGURES", "SnapshotRecorder", "prometheus_history"]

FIGURES: tuple[HistoryKind, ...] = ("request_rate", "error_ratio", "p50", "p95", "p99", "accuracy")
# Throughput adds up over a deployment's series (e.g. two versions during a rollout); for the
# quality figures the worse one is what an operator must see.
_COMBINE: dict[str, Callable[[float, float], float]] = {
    "request_rate": lambda a, b: a + b,
    "accuracy": min,
}


def _scope(deployment: str, instance: str) -> Scope:
    return Scope(deployment=deployment) if deployment else Scope(instance=instance)


def _merged(name: str, series: Iterable[Series]) -> Series | None:
    """One series per figure: points at the same instant are combined."""
    combine = _COMBINE.get(name, max)
    points: dict[float, float] = {}
    for s in series:
        for t, v in s.points:
            points[t] = combine(points[t], v) if t in points else v
    if not points:
        return None
    return Series(name=name, labels={}, points=tuple(sorted(points.items())))


def prometheus_history(
    source: PrometheusSource, deployment: str, minutes: float, instance: str = ""
) -> MonitorHistory:
    """Range queries for each figure of one deployment (or a target by its host:port)."""
    scope = _scope(deployment, instance)
    end = datetime.now(UTC)
    found = (_merged(kind, source.history(kind, scope, minutes=minutes)) for kind in FIGURES)
    return MonitorHistory(
        deployment=deployment or instance,
        source="prometheus range query",
        end=end,
        minutes=minutes,
        series=tuple(s for s in found if s is not None),
    )


def _figures(row: DeploymentHealth) -> dict[str, float | None]:
    return {
        "request_rate": row.request_rate,
        "error_ratio": row.error_ratio,
        "p50": row.latency.p50,
        "p95": row.latency.p95,
        "p99": row.latency.p99,
        "accuracy": row.quality.get("accuracy"),
    }


class SnapshotRecorder:
    """The last ``size`` snapshots of each deployment, as points (safe across threads)."""

    def __init__(self, size: int = 300, clock: Callable[[], datetime] | None = None) -> None:
        self.size = size
        self._clock = clock or (lambda: datetime.now(UTC))
        self._rings: dict[str, deque[tuple[float, dict[str, float | None]]]] = {}
        self._lock = threading.Lock()

    def record(self, snapshot: MonitorSnapshot) -> None:
        """Keep each row's figures at the snapshot's time (a down row keeps nothing)."""
        at = snapshot.taken_at.timestamp()
        with self._lock:
            for row in snapshot.rows:
                if row.up and not row.error:
                    key = row.deployment or row.instance
                    ring = self._rings.setdefault(key, deque(maxlen=self.size))
                    ring.append((at, _figures(row)))

    def history(self, deployment: str, minutes: float, instance: str = "") -> MonitorHistory:
        """What was recorded of one deployment in the last ``minutes``."""
        key = deployment or instance
        end = self._clock()
        since = end.timestamp() - minutes * 60
        with self._lock:
            kept = [(t, figures) for t, figures in self._rings.get(key, ()) if t >= since]
        series = []
        for name in FIGURES:
            points = tuple((t, v) for t, f in kept if (v := f[name]) is not None)
            if points:
                series.append(Series(name=name, labels={}, points=points))
        return MonitorHistory(
            deployment=key,
            source="recorded snapshots",
            end=end,
            minutes=minutes,
            series=tuple(series),
        )
