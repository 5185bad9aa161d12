"""Deployments: the live map of serving containers; logs, roll back, take down."""

from __future__ import annotations

from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable

from backends.records import Deployment
from console import format as fmt
from console.messages import BackendFailed, DeploymentChanged, DeploymentsLoaded
from console.modals.confirm import ConfirmModal
from console.screens.base import PollingScreen


class DeploymentsScreen(PollingScreen):
    """Refreshed every few seconds while shown (the next refresh is scheduled after the last)."""

    RESOURCE = "deploy"
    MUTATING: ClassVar[dict[str, str]] = {"rollback": "roll back", "take_down": "take down"}
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("l", "logs", "Logs", id="deploy.logs", tooltip="Follow the deployment's logs"),
        Binding("R", "rollback", "Roll back", id="deploy.rollback", tooltip="Previous version"),
        Binding("d", "take_down", "Take down", id="deploy.down", tooltip="Remove the deployment"),
        Binding("ctrl+r", "reload", "Reload", id="deploy.reload", tooltip="Refresh now"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deployments: list[Deployment] = []

    def compose_body(self) -> ComposeResult:
        yield DataTable(id="deploy-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#deploy-table", DataTable)
        table.add_columns("name", "model", "version", "alias", "state", "health", "port", "uptime")
        self.set_pane_status("loading deployments…")
        self.load()

    def load(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="deployments")
    def _load(self) -> None:
        try:
            deployments = self.mlops.backends.list_deployments()
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(DeploymentsLoaded(deployments))

    def on_deployments_loaded(self, message: DeploymentsLoaded) -> None:
        self.loaded()
        self.deployments = message.deployments
        table = self.query_one("#deploy-table", DataTable)
        row = table.cursor_row
        table.clear()
        for d in message.deployments:
            table.add_row(
                d.name,
                d.model,
                f"v{d.version}" if d.version else "-",
                d.alias or "-",
                d.state,
                d.health,
                str(d.port or "-"),
                fmt.since(d.started_at),
                key=d.name,
            )
        if message.deployments:
            table.move_cursor(row=min(row, table.row_count - 1))
        self.set_pane_status(
            f"{len(message.deployments)} deployments · refreshed every "
            f"{self.mlops.refresh_interval:g}s"
            if message.deployments
            else "no deployments (mlops deploy up MODEL@champion)"
        )
        self.schedule_refresh(self.mlops.refresh_interval)

    def _selected(self) -> Deployment | None:
        table = self.query_one("#deploy-table", DataTable)
        if table.row_count == 0:
            self.notify("no deployment selected", severity="warning")
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((d for d in self.deployments if d.name == key), None)

    def action_logs(self) -> None:
        deployment = self._selected()
        if deployment is not None:
            from console.screens.logs import LogsScreen

            self.app.push_screen(LogsScreen(deployment.name))

    def action_take_down(self) -> None:
        if self.refuse_if_read_only("take_down"):
            return
        d = self._selected()
        if d is None:
            return
        body = (
            f"Take down deployment '{d.name}'\n"
            f"  serving {d.model} v{d.version or '?'} on port {d.port or '-'}\n\n"
            "Its router and model containers are stopped and removed; clients of "
            f"{d.url or 'its address'} get no answer afterwards."
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.set_pane_status(f"taking down {d.name}…")
                self._take_down(d.name)

        self.app.push_screen(
            ConfirmModal(f"Take down {d.name}?", body, confirm_label="Take down"), confirmed
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _take_down(self, name: str) -> None:
        try:
            removed = self.mlops.backends.remove_deployment(name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("take down", exc))
        else:
            self.post_message(
                DeploymentChanged(name, f"{name} taken down ({len(removed)} containers)")
            )

    def action_rollback(self) -> None:
        if self.refuse_if_read_only("rollback"):
            return
        d = self._selected()
        if d is not None:
            self._prepare_rollback(d)

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _prepare_rollback(self, d: Deployment) -> None:
        try:
            target = self.mlops.backends.rollback_target(d.name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("roll back", exc))
        else:
            self.app.call_from_thread(self._confirm_rollback, d, target)

    def _confirm_rollback(self, d: Deployment, target: str) -> None:
        body = (
            f"Roll back deployment '{d.name}' ({d.model})\n"
            f"  from version {d.version}\n  to   version {target}\n\n"
            "The previous version's container starts, the router switches once it is ready "
            "(no failed request), then the current one is removed."
        )

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.set_pane_status(f"rolling back {d.name} to v{target}…")
                self._rollback(d.name)

        self.app.push_screen(
            ConfirmModal(f"Roll back {d.name}?", body, confirm_label="Roll back"), confirmed
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _rollback(self, name: str) -> None:
        try:
            deployment = self.mlops.backends.rollback_deployment(name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("roll back", exc))
        else:
            self.post_message(
                DeploymentChanged(
                    name, f"{name} now serves {deployment.model} v{deployment.version}"
                )
            )

    def on_deployment_changed(self, message: DeploymentChanged) -> None:
        self.notify(message.summary, title="Deployment changed")
        self.load()
