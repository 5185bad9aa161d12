"""Monitor: per deployment request rate, errors and p50/p95/p99 over time, drift against its
threshold, and alerts; when drift crosses the threshold it offers retraining. While a canary
release runs, its stable and canary versions' figures side by side (its last evaluation's)."""

from __future__ import annotations

import time
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from backends.errors import BackendError
from backends.mlflow.drift_reference import default_thresholds
from backends.records import CanaryRelease, DeploymentHealth, DriftThresholds, MonitorSnapshot
from console import format as fmt
from console.capabilities import Canaries
from console.messages import (
    BackendFailed,
    CanariesLoaded,
    DriftThresholdsLoaded,
    MonitorHistoryLoaded,
    MonitorSampled,
)
from console.screens.monitor_retrain import RetrainOffers, row_key
from console.widgets.canary import side_by_side
from console.widgets.drift import DriftTable, DriftWatch, over_threshold, summary
from console.widgets.plots import MonitorPlots
from console.widgets.tables import Table

HISTORY_MINUTES = 15.0
THRESHOLDS_RETRY = 30.0  # seconds before asking MLflow again for a reference it could not give
UNKNOWN = default_thresholds("the drift reference is not read yet")


def current_rows(snap: MonitorSnapshot | None) -> dict[str, DeploymentHealth]:
    """One row per deployment. Mid-rollout a deployment briefly has a row per version: the
    one that answers, of the newest version, is the one it serves."""
    rows: dict[str, DeploymentHealth] = {}
    for row in snap.rows if snap else ():
        held = rows.get(row_key(row))
        if held is None or _serving_order(row) > _serving_order(held):
            rows[row_key(row)] = row
    return rows


def _serving_order(row: DeploymentHealth) -> tuple[bool, int]:
    return row.up, row.version if row.version is not None else -1


class MonitorScreen(RetrainOffers):
    """Health table, the selected deployment's plots and drift, alerts; refreshed while shown.

    The next sample is scheduled when the last one arrived; plots and thresholds load in their
    own workers, one at a time, so a slow Prometheus or MLflow delays them and nothing else.
    """

    RESOURCE = "monitor"
    FILTER = "a deployment or model name"
    FILTER_TARGET = "#health-table"
    MUTATING: ClassVar[dict[str, str]] = {"retrain": "retrain"}
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding(
            "T",
            "retrain",
            "Retrain",
            id="monitor.retrain",
            tooltip="Train a challenger for the selected deployment on new data",
        ),
        Binding("ctrl+r", "reload", "Refresh", id="monitor.reload", tooltip="Refresh now"),
        Binding("slash", "filter", "Filter", id="monitor.filter", tooltip="Narrow the list"),
        Binding("escape", "clear_filter", "Back", id="monitor.escape", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: MonitorSnapshot | None = None
        self.selected: str | None = None
        self._keys: list[str] = []  # the deployment of each health row, in order
        self.thresholds: dict[tuple[str, int | None], DriftThresholds] = {}
        self.offers: list[str] = []  # deployments offered retraining, in order (one per crossing)
        self.retraining: str | None = None
        self._asked: dict[
            tuple[str, int | None], float
        ] = {}  # thresholds in flight or to retry: since
        self._provisional: set[tuple[str, int | None]] = (
            set()
        )  # defaults shown while MLflow is down
        self._watch = DriftWatch()
        self._history_busy = False
        self._history_again = False
        self.releases: list[CanaryRelease] = []  # running or paused, any deployment

    @property
    def canaries(self) -> Canaries:
        """Canary releases, for the stable-and-canary section."""
        return self.mlops.services.canaries

    def compose_body(self) -> ComposeResult:
        yield Table(id="health-table", cursor_type="row")
        yield Static("", id="canary-compare", markup=False)
        yield MonitorPlots(id="plots")
        yield Static("drift", id="drift-title", classes="section", markup=False)
        yield DriftTable(id="drift-table")
        yield Static("", id="alerts", markup=False)
        yield Static("", id="retrain-status", markup=False)

    def body_mounted(self) -> None:
        self.query_one("#health-table", DataTable).add_columns(
            "deployment",
            "serving",
            "up",
            "req/s",
            "5xx",
            "4xx",
            "p50",
            "p95",
            "p99",
            "drift",
            "quality (labels)",
        )
        self.set_pane_status("sampling…")
        self.load()

    # ------------------------------------------------------------------ sampling

    def load(self) -> None:
        self._sample()

    @work(thread=True, exclusive=True, exit_on_error=False, group="monitor")
    def _sample(self) -> None:
        try:
            snapshot = self.monitoring.monitor()
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(MonitorSampled(snapshot))
        try:
            releases = self.canaries.canary_releases()
        except Exception as exc:  # the figures stand without it; said in the section
            self.post_message(CanariesLoaded([], error=str(exc) or type(exc).__name__))
        else:
            self.post_message(CanariesLoaded([r for r in releases if not r.finished]))

    def on_canaries_loaded(self, message: CanariesLoaded) -> None:
        if not message.error:
            self.releases = message.releases
        self._show_canaries(message.error)

    def _show_canaries(self, error: str = "") -> None:
        """Each shown deployment's running canary: stable and canary side by side."""
        shown = [r for r in self.releases if self.matches(r.deployment, r.model)]
        parts = [side_by_side(r) for r in shown]
        if error and self.releases:
            parts.append(f"canary releases could not be read again: {error}")
        section = self.query_one("#canary-compare", Static)
        section.update("\n".join(parts))
        section.set_class(bool(parts), "shown")

    def on_monitor_sampled(self, message: MonitorSampled) -> None:
        self.loaded()
        snap = self.snapshot = message.snapshot
        self._fill_health(snap)
        self._ask_thresholds(snap)
        self._offer_retraining(snap)
        self._show_drift()
        self._show_alerts(snap)
        self._show_status(snap)
        self._request_history()
        self.schedule_refresh(self.mlops.refresh_interval)

    def _show_status(self, snap: MonitorSnapshot) -> None:
        if not snap.rows:
            self.set_pane_status(f"{snap.source}: no serving targets")
            return
        where = f" · {len(self._keys)} shown · filter: {self.row_filter}" if self.row_filter else ""
        self.set_pane_status(
            f"{snap.source} · window {snap.window_seconds:g}s · {len(snap.rows)} targets · "
            f"at {snap.taken_at.astimezone().strftime('%H:%M:%S')}{where}"
        )

    def filter_changed(self) -> None:
        if self.snapshot is None:
            return
        before = self.selected
        self._show_canaries()
        self._fill_health(self.snapshot)
        self._show_status(self.snapshot)
        if self.selected != before:
            self._show_drift()
            self.query_one(MonitorPlots).clear("loading…")
            self._request_history()

    def _fill_health(self, snap: MonitorSnapshot) -> None:
        health = self.query_one("#health-table", DataTable)
        health.clear()
        shown = [r for r in snap.rows if self.matches(row_key(r), r.model)]
        self._keys = [row_key(r) for r in shown]  # not row keys: a key may show twice
        for row in shown:
            health.add_row(*self._health_cells(row))
        if not self._keys:
            self.selected = None
            return
        if self.selected not in self._keys:
            self.selected = self._keys[0]
        # Set before the move: its RowHighlighted then finds nothing changed.
        health.move_cursor(row=self._keys.index(self.selected))

    def _health_cells(self, row: DeploymentHealth) -> list[object]:
        return [
            row_key(row),
            f"{row.model} v{row.version}" if row.version else row.model or "?",
            Text("up", style="green") if row.up else Text("DOWN", style="bold red"),
            fmt.number(row.request_rate, 3),
            fmt.percent(row.error_ratio),
            fmt.percent(row.client_error_ratio),
            fmt.millis(row.latency.p50),
            fmt.millis(row.latency.p95),
            fmt.millis(row.latency.p99),
            summary(row, self.thresholds_for(row)),
            fmt.quality(row.quality, row.labelled_rows, row.label_coverage),
        ]

    def _show_alerts(self, snap: MonitorSnapshot) -> None:
        alerts = snap.alerts
        if alerts is None:
            text = "alerts: not evaluated by this source"
        elif not alerts:
            text = "alerts: none"
        else:
            text = "alerts: " + ", ".join(
                f"{a.name} {a.state} ({a.labels.get('deployment', '')})" for a in alerts
            )
        self.query_one("#alerts", Static).update(text)

    def selected_row(self) -> DeploymentHealth | None:
        """The health row under the cursor."""
        return current_rows(self.snapshot).get(self.selected or "")

    @on(DataTable.RowHighlighted, "#health-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not 0 <= event.cursor_row < len(self._keys):
            return
        key = self._keys[event.cursor_row]
        if key == self.selected:
            return
        self.selected = key
        self._show_drift()
        self.query_one(MonitorPlots).clear("loading…")
        self._request_history()

    # ------------------------------------------------------------------ drift

    def thresholds_for(self, row: DeploymentHealth) -> DriftThresholds:
        """The thresholds of the row's model version (the defaults until its reference is read)."""
        return self.thresholds.get((row.model, row.version), UNKNOWN)

    def _show_drift(self) -> None:
        row = self.selected_row()
        title = self.query_one("#drift-title", Static)
        table = self.query_one(DriftTable)
        if row is None:
            title.update("drift: no deployment selected")
            table.show(None, UNKNOWN)
            return
        limits = self.thresholds_for(row)
        if not row.drift:
            title.update(f"drift of {row_key(row)}: no figures yet (the server computes them)")
        else:
            title.update(
                f"drift of {row_key(row)} · PSI over {limits.psi:g} is drift ({limits.source})"
            )
        table.show(row, limits)

    def _ask_thresholds(self, snap: MonitorSnapshot) -> None:
        now = time.monotonic()
        for key in {(r.model, r.version) for r in snap.rows if r.drift}:
            since = self._asked.get(key)
            if key in self.thresholds and since is None:
                continue  # read for good
            if since is not None and now - since < THRESHOLDS_RETRY:
                continue  # in flight, or failed a moment ago
            self._asked[key] = now
            self._load_thresholds(*key)

    @work(thread=True, exit_on_error=False, group="monitor-thresholds")
    def _load_thresholds(self, model: str, version: int | None) -> None:
        try:
            found = self.monitoring.drift_thresholds(model, version)
        except Exception as exc:  # the defaults stand in until MLflow answers
            error = exc if isinstance(exc, BackendError) else BackendError(repr(exc))
            fallback = default_thresholds(f"reference unread: {error.title}")
            self.post_message(DriftThresholdsLoaded(model, version, fallback, error.message))
        else:
            self.post_message(DriftThresholdsLoaded(model, version, found))

    def on_drift_thresholds_loaded(self, message: DriftThresholdsLoaded) -> None:
        key = (message.model, message.version)
        self.thresholds[key] = message.thresholds
        if message.error:
            self._asked[key] = time.monotonic()  # ask again after THRESHOLDS_RETRY
            self._provisional.add(key)  # shown, but no retraining is offered on the defaults
        else:
            self._asked.pop(key, None)
            self._provisional.discard(key)
        if self.snapshot is not None:
            self._fill_health(self.snapshot)
            self._offer_retraining(self.snapshot)
        self._show_drift()

    def _offer_retraining(self, snap: MonitorSnapshot) -> None:
        """Offer once per crossing: a deployment going from no feature over to some."""
        for row in current_rows(snap).values():
            limits = self.thresholds.get((row.model, row.version))
            if limits is None or (row.model, row.version) in self._provisional:
                continue  # judged once its own thresholds are known, not the defaults
            over = over_threshold(row, limits)
            if self._watch.crossed(row_key(row), bool(over)):
                self._offer(row, limits)

    # ------------------------------------------------------------------ plots

    def _request_history(self) -> None:
        row = self.selected_row()
        if row is None:
            self.query_one(MonitorPlots).clear("no deployment")
            return
        if self._history_busy:  # one query at a time: a slow Prometheus gets no pile-up
            self._history_again = True
            return
        self._history_busy = True
        self._load_history(row.deployment, row.instance)

    @work(thread=True, exit_on_error=False, group="monitor-history")
    def _load_history(self, deployment: str, instance: str) -> None:
        try:
            history = self.monitoring.monitor_history(deployment, HISTORY_MINUTES, instance)
        except Exception as exc:  # shown on the plots, never raised
            self.post_message(BackendFailed("history", exc))
        else:
            self.post_message(MonitorHistoryLoaded(history))

    def on_monitor_history_loaded(self, message: MonitorHistoryLoaded) -> None:
        if message.history.deployment == self.selected:
            self.query_one(MonitorPlots).show_history(message.history)
        self._history_done()

    def _history_done(self) -> None:
        self._history_busy = False
        if self._history_again:
            self._history_again = False
            self._request_history()

    def on_backend_failed(self, message: BackendFailed) -> None:
        if message.what == "history":
            message.prevent_default()  # the plots say it; no modal, no pane-wide error
            message.stop()
            title = getattr(message.error, "title", "history failed")
            self.query_one(MonitorPlots).show_note(f"{title}; retrying")
            self._history_done()
        elif message.what == "retrain":
            self._retrain_ended()  # and the base class shows the error
