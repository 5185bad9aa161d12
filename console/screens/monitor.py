"""Monitor: per deployment request rate, errors, p50/p95/p99 and drift against its threshold."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from console import format as fmt
from console.messages import BackendFailed, MonitorSampled
from console.screens.base import PollingScreen

PSI_THRESHOLD = 0.2


class MonitorScreen(PollingScreen):
    """Health table, drift table and alerts; refreshed while shown, paused while hidden."""

    CSS_PATH = "monitor.tcss"
    RESOURCE = "monitor"
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("ctrl+r", "reload", "Refresh", id="monitor.reload", tooltip="Refresh now"),
    ]

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="health-table", cursor_type="row")
        yield Static("drift (PSI per feature; threshold 0.2)", classes="section")
        yield DataTable(id="drift-table", cursor_type="row")
        yield Static("", id="alerts", markup=False)

    def on_mount(self) -> None:
        self.query_one("#health-table", DataTable).add_columns(
            "deployment", "model", "version", "up", "req/s", "5xx", "4xx", "p50", "p95", "p99"
        )
        self.query_one("#drift-table", DataTable).add_columns(
            "deployment", "feature", "PSI", "KS p", "drift"
        )
        self.set_pane_status("sampling…")
        self.load()

    def load(self) -> None:
        self._sample()

    @work(thread=True, exclusive=True, exit_on_error=False, group="monitor")
    def _sample(self) -> None:
        try:
            snapshot = self.mlops.backends.monitor()
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(MonitorSampled(snapshot))

    def on_monitor_sampled(self, message: MonitorSampled) -> None:
        self.loaded()
        snap = message.snapshot
        health = self.query_one("#health-table", DataTable)
        drift = self.query_one("#drift-table", DataTable)
        health.clear()
        drift.clear()
        for row in snap.rows:
            name = row.deployment or f"{row.model} v{row.version}"
            health.add_row(
                name,
                row.model,
                row.version,
                Text("up", style="green") if row.up else Text("DOWN", style="bold red"),
                fmt.number(row.request_rate, 3),
                fmt.percent(row.error_ratio),
                fmt.percent(row.client_error_ratio),
                fmt.millis(row.latency.p50),
                fmt.millis(row.latency.p95),
                fmt.millis(row.latency.p99),
            )
            for f in row.drift:
                over = f.drifted or (f.psi is not None and f.psi > PSI_THRESHOLD)
                drift.add_row(
                    name,
                    f.feature,
                    fmt.number(f.psi, 3),
                    fmt.number(f.ks_pvalue, 3),
                    Text("DRIFT", style="bold red") if over else Text("ok", style="green"),
                )
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
        self.set_pane_status(
            f"{snap.source} · window {snap.window_seconds:g}s · {len(snap.rows)} targets · "
            f"at {snap.taken_at.astimezone().strftime('%H:%M:%S')}"
            if snap.rows
            else f"{snap.source}: no serving targets"
        )
        self.schedule_refresh(self.mlops.refresh_interval)
