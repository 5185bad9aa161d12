"""Alerts: Alertmanager's groups and silences; acknowledge, silence, expire, read the runbook.

The same operations as `mlops alerts ack|silence|expire`, each planned in a worker and shown in
a dialog before it is posted: an acknowledgement is a short silence on exactly the group's
labels in the operator's name (karma's), a silence shows how many alerts its matchers match
now. With no Alertmanager the screen shows Prometheus' own alerts, read-only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static

from console import format as fmt
from console.alerts_text import (
    expire_plan,
    extra_labels,
    quiet_reason,
    silence_matchers,
    silence_plan,
)
from console.capabilities import Alerts
from console.messages import (
    AlertsChanged,
    AlertsLoaded,
    BackendFailed,
    ExpirePlanned,
    RunbookRead,
    SilencePlanned,
)
from console.modals.confirm import ConfirmModal
from console.screens.base import PollingScreen
from console.widgets import tables

if TYPE_CHECKING:
    from backends.records.alerts import (
        AlertGroup,
        AlertsView,
        ExpirePlan,
        ManagedAlert,
        SilencePlan,
    )
    from console.modals.silence_form import SilenceRequest

COLUMNS = ("group", "state", "severity", "alert", "for", "labels", "note")
SILENCE_COLUMNS = ("silence", "state", "matchers", "by", "until", "comment")
ACK_MINUTES = 15.0  # karma's acknowledgement: long enough to look, short enough to come back


class AlertsScreen(PollingScreen):
    RESOURCE = "alerts"
    FILTER = "an alert name or label value"
    FILTER_TARGET = "#alerts-table"
    MUTATING: ClassVar[dict[str, str]] = {
        "acknowledge": "acknowledge",
        "silence": "silence",
        "expire": "expire a silence",
    }
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("a", "acknowledge", "Ack", id="alerts.ack", tooltip="Silence the group 15 min"),
        Binding("s", "silence", "Silence", id="alerts.silence", tooltip="Silence by matchers"),
        Binding("x", "expire", "Expire", id="alerts.expire", tooltip="End the selected silence"),
        Binding("r", "runbook", "Runbook", id="alerts.runbook", tooltip="Read the runbook"),
        Binding("ctrl+r", "reload", "Reload", id="alerts.reload", tooltip="Refresh now"),
        Binding("slash", "filter", "Filter", id="alerts.filter", tooltip="Narrow the list"),
        Binding("escape", "clear_filter", "Back", id="alerts.escape", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.view: AlertsView | None = None
        self._rows: list[tuple[AlertGroup, ManagedAlert]] = []

    @property
    def alerts_of(self) -> Alerts:
        return self.mlops.services.alerts

    def compose_body(self) -> ComposeResult:
        yield tables.Table(id="alerts-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="alert-detail", classes="detail", markup=False)
        yield Static("silences", classes="section-title", markup=False)
        yield tables.Table(id="silences-table", cursor_type="row", zebra_stripes=True)

    def body_mounted(self) -> None:
        tables.fill(self.query_one("#alerts-table", DataTable), COLUMNS, [], [])
        tables.fill(self.query_one("#silences-table", DataTable), SILENCE_COLUMNS, [], [])
        self.set_pane_status("loading alerts…")
        self.load()

    def load(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="alerts")
    def _load(self) -> None:
        try:
            view = self.alerts_of.alerts()
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(AlertsLoaded(view))

    def on_alerts_loaded(self, message: AlertsLoaded) -> None:
        self.loaded()
        self.view = message.view
        self._show()
        self.schedule_refresh(self.mlops.refresh_interval)

    def filter_changed(self) -> None:
        self._show()

    # ------------------------------------------------------------------ drawing

    def _show(self) -> None:
        view = self.view
        if view is None:
            return
        table = self.query_one("#alerts-table", DataTable)
        current = self._under_cursor()
        self._rows = [
            (g, a)
            for g in view.groups
            for a in g.alerts
            if self.matches(a.name, *a.labels.values(), g.id)
        ]
        keys = [f"{g.id}/{a.fingerprint}" for g, a in self._rows]
        rows = [
            (
                g.id,
                g.state,
                a.severity or "-",
                a.name,
                fmt.since(a.starts_at),
                fmt.pairs({**g.labels, **extra_labels(a, g)}, limit=4),
                (quiet_reason(a, view) or a.summary)[:80],
            )
            for g, a in self._rows
        ]
        row = table.cursor_row
        tables.fill(table, COLUMNS, rows, keys)
        if current is not None and f"{current[0].id}/{current[1].fingerprint}" in keys:
            table.move_cursor(row=keys.index(f"{current[0].id}/{current[1].fingerprint}"))
        elif rows:
            table.move_cursor(row=min(row, table.row_count - 1))
        silences = [s for s in view.silences if s.state != "expired"]
        tables.fill(
            self.query_one("#silences-table", DataTable),
            SILENCE_COLUMNS,
            [
                (
                    s.short_id,
                    s.state,
                    silence_matchers(s),
                    s.created_by,
                    fmt.when(s.ends_at),
                    s.comment[:50],
                )
                for s in silences
            ],
            [s.id for s in silences],
        )
        total = sum(len(g.alerts) for g in view.groups)
        counted = self.filtered(len(self._rows), total, "alert")
        groups = f"{len(view.groups)} group{'s' if len(view.groups) != 1 else ''}"
        quiet = f"{len(silences)} silence{'s' if len(silences) != 1 else ''}"
        state = f"{counted} in {groups} · {quiet} · {view.source}"
        self.set_pane_status(state if total else f"no alerts · {view.source}")
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "alerts-table":
            self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#alert-detail", Static)
        chosen = self._under_cursor()
        if chosen is None or self.view is None:
            detail.update("")
            return
        group, alert = chosen
        lines = [
            f"{alert.name} [{alert.severity or 'no severity'}] — {alert.summary}",
            alert.annotations.get("description", ""),
            "labels: " + fmt.pairs(alert.labels, limit=12),
        ]
        quiet = quiet_reason(alert, self.view)
        if quiet:
            lines.append(quiet)
        if alert.runbook_url:
            lines.append(f"runbook (r): {alert.runbook_url}")
        if group.receiver:
            lines.append(f"notified to: {group.receiver}")
        detail.update("\n".join(line for line in lines if line))

    def _under_cursor(self) -> tuple[AlertGroup, ManagedAlert] | None:
        table = self.query_one("#alerts-table", DataTable)
        if table.row_count == 0 or not self._rows:
            return None
        row = table.cursor_row
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def _selected(self) -> tuple[AlertGroup, ManagedAlert] | None:
        chosen = self._under_cursor()
        if chosen is None:
            self.notify("no alert selected", severity="warning")
        return chosen

    def _writable(self) -> bool:
        if self.view is not None and self.view.read_only:
            self.notify(
                "no Alertmanager (ALERTMANAGER_URL): Prometheus' alerts are read-only",
                title="Read-only source",
                severity="warning",
            )
            return False
        return True

    # ------------------------------------------------------------------ acknowledge, silence

    def action_acknowledge(self) -> None:
        if self.refuse_if_read_only("acknowledge") or not self._writable():
            return
        chosen = self._selected()
        if chosen is not None:
            self._plan_ack(chosen[0].id)

    @work(thread=True, exit_on_error=False, group="alert-changes")
    def _plan_ack(self, group: str) -> None:
        try:
            plan = self.alerts_of.plan_acknowledge(group, ACK_MINUTES)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("acknowledge", exc))
        else:
            self.post_message(SilencePlanned(plan))

    def action_silence(self) -> None:
        if self.refuse_if_read_only("silence") or not self._writable():
            return
        from console.modals.silence_form import SilenceForm

        chosen = self._under_cursor()
        labels = dict(chosen[0].labels) if chosen else {}
        if chosen and not labels:
            labels = {"alertname": chosen[1].name}
        prefill = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))

        def submitted(request: SilenceRequest | None) -> None:
            if request is not None:
                self._plan_silence(request)

        self.app.push_screen(SilenceForm(prefill), submitted)

    @work(thread=True, exit_on_error=False, group="alert-changes")
    def _plan_silence(self, request: SilenceRequest) -> None:
        try:
            plan = self.alerts_of.plan_silence(request.matchers, request.minutes, request.comment)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("silence", exc))
        else:
            self.post_message(SilencePlanned(plan))

    def on_silence_planned(self, message: SilencePlanned) -> None:
        plan = message.plan
        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen
        title = "Acknowledge these alerts?" if plan.acknowledges else "Post this silence?"

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._silence(plan)

        self.app.push_screen(
            ConfirmModal(title, silence_plan(plan), confirm_label="Silence"), confirmed
        )

    @work(thread=True, exit_on_error=False, group="alert-changes")
    def _silence(self, plan: SilencePlan) -> None:
        try:
            silence_id = self.alerts_of.silence(plan)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("silence", exc))
        else:
            what = "acknowledged" if plan.acknowledges else "silenced"
            self.post_message(
                AlertsChanged(
                    f"{what}: silence {silence_id[:8]} until {fmt.when(plan.ends_at)} "
                    f"({len(plan.matching)} alerts)"
                )
            )

    # ------------------------------------------------------------------ expire

    def action_expire(self) -> None:
        if self.refuse_if_read_only("expire") or not self._writable():
            return
        silence_id = self._silence_to_expire()
        if silence_id:
            self._plan_expire(silence_id)

    def _silence_to_expire(self) -> str | None:
        """The silence under the cursor of the silences table when it has the focus, else the
        one quieting the selected alert."""
        silences = self.query_one("#silences-table", DataTable)
        if self.focused is silences and silences.row_count:
            key = silences.coordinate_to_cell_key(silences.cursor_coordinate).row_key.value
            return str(key) if key else None
        chosen = self._under_cursor()
        if chosen is not None and chosen[1].silenced_by:
            return chosen[1].silenced_by[0]
        self.notify(
            "select a silenced alert, or a silence in the list below (tab)", severity="warning"
        )
        return None

    @work(thread=True, exit_on_error=False, group="alert-changes")
    def _plan_expire(self, silence_id: str) -> None:
        try:
            plan = self.alerts_of.plan_expire(silence_id)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("expire", exc))
        else:
            self.post_message(ExpirePlanned(plan))

    def on_expire_planned(self, message: ExpirePlanned) -> None:
        plan = message.plan
        if self.app.screen is not self:
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._expire(plan)

        self.app.push_screen(
            ConfirmModal("Expire this silence?", expire_plan(plan), confirm_label="Expire"),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="alert-changes")
    def _expire(self, plan: ExpirePlan) -> None:
        try:
            self.alerts_of.expire(plan)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("expire", exc))
        else:
            self.post_message(AlertsChanged(f"expired silence {plan.silence.short_id}"))

    def on_alerts_changed(self, message: AlertsChanged) -> None:
        self.notify(message.summary, title="Alerts")
        self.load()

    # ------------------------------------------------------------------ runbook

    def action_runbook(self) -> None:
        chosen = self._selected()
        if chosen is not None:
            self._read_runbook(chosen[1].name, chosen[1].runbook_url)

    @work(thread=True, exit_on_error=False, group="runbook")
    def _read_runbook(self, name: str, url: str) -> None:
        from console.runbooks import runbook_text

        try:
            text = runbook_text(url)
        except OSError as exc:
            text = f"The runbook {url} could not be read: {exc}"
        self.post_message(RunbookRead(name, text))

    def on_runbook_read(self, message: RunbookRead) -> None:
        from console.modals.runbook import RunbookModal

        if self.app.screen is self:
            self.app.push_screen(RunbookModal(f"Runbook: {message.alert}", message.text))
