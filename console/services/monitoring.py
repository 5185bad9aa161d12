"""Live figures, their history, drift thresholds and retraining for the monitor screen."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from console.config import default_project
from console.services.session import Session

if TYPE_CHECKING:
    from backends.records import (
        DriftThresholds,
        MonitorHistory,
        MonitorSnapshot,
        RetrainOutcome,
        ScrapeTarget,
    )


def settings_targets(entries: tuple[str, ...]) -> list[ScrapeTarget]:
    """MLOPS_MONITOR_TARGETS' entries, ``URL`` or ``NAME=URL``, as scrape targets; a bare URL is
    named by its address (host:port), as the Monitor's row shows it."""
    from backends.prometheus.discovery import base_url
    from backends.records import ScrapeTarget

    targets = []
    for entry in entries:
        # NAME=URL only where what comes before "=" is a name: a URL's query has "=" too.
        named = re.match(r"^\s*([A-Za-z0-9_.-]+)=(?=\S)", entry)
        name, url = (named.group(1), entry[named.end() :]) if named else ("", entry)
        target = ScrapeTarget(url=base_url(url))
        targets.append(ScrapeTarget(url=target.url, deployment=name or target.address))
    return targets


class MetricsMonitoring:
    """Prometheus when the session names one, else the direct scrape of the deployments."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._lock = threading.Lock()
        self._monitor_lock = threading.Lock()
        self._metrics: Any = None
        self._metrics_targets: tuple[Any, ...] | None = None
        self._recorder: Any = None  # the direct scrape's past, for plots (no Prometheus)

    @property
    def prometheus_url(self) -> str | None:
        return self.session.settings.prometheus_url

    def monitor(self) -> MonitorSnapshot:
        if self.prometheus_url:
            return self._prometheus().snapshot()  # type: ignore[no-any-return]
        from backends.prometheus.scrape_source import ScrapeSource

        targets = self._scrape_targets()
        # One sample at a time: a refresh asked for while one runs must not close the source
        # under it (a cancelled thread worker keeps running).
        with self._monitor_lock:
            if self._metrics is None or targets != self._metrics_targets:
                if self._metrics is not None:
                    self._metrics.close()
                self._metrics = ScrapeSource(targets, interval=1.0)
                self._metrics_targets = targets
            snapshot: MonitorSnapshot = self._metrics.snapshot()
            self._recorded().record(snapshot)
        return snapshot

    def _scrape_targets(self) -> tuple[ScrapeTarget, ...]:
        """The engine's deployments and the servers the settings name (MLOPS_MONITOR_TARGETS:
        a local `mlops serve`, the quickstart's process). With targets of its own, the pane
        does not need Docker: an engine that is down or absent costs only its deployments
        (the status bar says so)."""
        from backends.errors import BackendError
        from backends.lifecycle import placement
        from backends.prometheus.discovery import scrape_targets

        named = tuple(settings_targets(self.session.settings.monitor_targets))
        try:
            # A swarm's deployments too: each router's /metrics is every task's.
            found = tuple(scrape_targets(placement.list_deployments(self.session.handles())))
        except BackendError:
            if not named:
                raise
            found = ()
        taken = {t.address for t in found}
        return found + tuple(t for t in named if t.address not in taken)

    def _prometheus(self) -> Any:
        from backends.prometheus.prometheus_source import PrometheusSource

        with self._lock:
            if self._metrics is None:
                self._metrics = PrometheusSource(self.prometheus_url or "", window="1m")
            return self._metrics

    def _recorded(self) -> Any:
        from backends.prometheus.history import SnapshotRecorder

        with self._lock:
            if self._recorder is None:
                self._recorder = SnapshotRecorder(size=300)
            return self._recorder

    def monitor_history(
        self, deployment: str, minutes: float, instance: str = ""
    ) -> MonitorHistory:
        from backends.prometheus.history import prometheus_history

        if self.prometheus_url:
            return prometheus_history(self._prometheus(), deployment, minutes, instance)
        return self._recorded().history(deployment, minutes, instance)  # type: ignore[no-any-return]

    def drift_thresholds(self, model: str, version: int | None) -> DriftThresholds:
        from backends.mlflow.drift_reference import reference_thresholds

        h = self.session.handles()
        return reference_thresholds(h.tracking_uri, model, version, client=h.mlflow())

    def retrain(
        self, deployment: str, data: str, on_line: Callable[[str], object]
    ) -> RetrainOutcome:
        from backends.docker import containers
        from backends.errors import NotFound
        from backends.identity import current_user
        from backends.lifecycle.retrain import retrain_challenger
        from backends.prometheus.discovery import scrape_targets
        from backends.records import RetrainTrigger

        h = self.session.handles()
        # The address the monitor reads it at (a port published on every interface → loopback).
        reachable = scrape_targets([containers.get_deployment(h.docker(), deployment)])
        if not reachable:
            raise NotFound(f"deployment {deployment!r} is not running or publishes no port")
        return retrain_challenger(
            h,
            reachable[0].url,
            Path(data).expanduser(),
            fallback_project=default_project(),
            deployment=deployment,
            on_line=on_line,
            trigger=RetrainTrigger(source="console", by=current_user()),
        )
