"""Deployments: the live map of serving containers; build, deploy, logs, roll back, take down;
a running canary release's state, and resume, abort and promote it (console.screens.deploy_canary).

Build, deploy, roll back and take down run the very operations of `mlops image build` and
`mlops deploy up/rollback/down` (backends.lifecycle), in workers: each is planned, shown in a
dialog, then applied as shown. Their progress shows on one line under the table.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from backends.records import Deployment
from console import format as fmt
from console.capabilities import Deployments
from console.messages import (
    BackendFailed,
    DeploymentChanged,
    DeploymentsLoaded,
    DeployPlanFailed,
    DeployPlanned,
    ImageBuilt,
    RollbackPlanned,
    TakeDownPlanned,
)
from console.modals.confirm import ConfirmModal
from console.modals.message import ErrorModal
from console.plans import (
    deploy_summary,
    deployed,
    rollback_summary,
    rolled_back,
    take_down_summary,
)
from console.screens.deploy_canary import CanaryReleases
from console.screens.deploy_tasks import LogLine
from console.widgets import canary as canary_text
from console.widgets import tables

if TYPE_CHECKING:
    from backends.records import (
        DeployPlan,
        RollbackPlan,
        TakeDownPlan,
    )
    from console.modals.deploy_forms import DeployRequest


COLUMNS = ("name", "model", "version", "alias", "state", "health", "port", "uptime")


class DeploymentsScreen(CanaryReleases):
    """Refreshed every few seconds while shown (the next refresh is scheduled after the last)."""

    RESOURCE = "deploy"
    FILTER = "a deployment, model or alias name"
    FILTER_TARGET = "#deploy-table"
    MUTATING: ClassVar[dict[str, str]] = {
        "build": "image build",
        "deploy": "deploy",
        "rollback": "roll back",
        "take_down": "take down",
        "canary_resume": "canary resume",
        "canary_abort": "canary abort",
        "canary_promote": "canary promote",
    }
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("b", "build", "Build", id="deploy.build", tooltip="Build a version's image"),
        Binding("u", "deploy", "Deploy", id="deploy.up", tooltip="Deploy a version"),
        Binding("l", "logs", "Logs", id="deploy.logs", tooltip="Follow the deployment's logs"),
        Binding("R", "rollback", "Roll back", id="deploy.rollback", tooltip="Previous version"),
        Binding("d", "take_down", "Take down", id="deploy.down", tooltip="Remove the deployment"),
        # Shown while the selected deployment has a canary release running (resume: paused).
        Binding(
            "r",
            "canary_resume",
            "Resume canary",
            id="deploy.canary.resume",
            tooltip="Resume the paused canary analysis",
        ),
        Binding(
            "a",
            "canary_abort",
            "Abort canary",
            id="deploy.canary.abort",
            tooltip="All traffic back to stable; the canary goes",
        ),
        Binding(
            "p",
            "canary_promote",
            "Promote canary",
            id="deploy.canary.promote",
            tooltip="The canary becomes the stable version now",
        ),
        Binding("ctrl+r", "reload", "Reload", id="deploy.reload", tooltip="Refresh now"),
        Binding("slash", "filter", "Filter", id="deploy.filter", tooltip="Narrow the list"),
        Binding("escape", "clear_filter", "Back", id="deploy.escape", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deployments: list[Deployment] = []

    @property
    def deployments_of(self) -> Deployments:
        """The one capability this screen uses."""
        return self.mlops.services.deployments

    def compose_body(self) -> ComposeResult:
        yield tables.Table(id="deploy-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="deploy-canary", markup=False)
        yield Static("", id="deploy-tasks", markup=False)

    def body_mounted(self) -> None:
        tables.fill(self.query_one("#deploy-table", DataTable), COLUMNS, [], [])
        self.set_pane_status("loading deployments…")
        self.load()
        self.start_countdown()

    def load(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="deployments")
    def _load(self) -> None:
        try:
            deployments = self.deployments_of.list_deployments()
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
            return
        self._read_canaries()  # first: the table then shows which deployments have one
        self.post_message(DeploymentsLoaded(deployments))

    def on_deployments_loaded(self, message: DeploymentsLoaded) -> None:
        self.loaded()
        self.deployments = message.deployments
        self._show_deployments()
        self._show_canary()
        self.schedule_refresh(self.mlops.refresh_interval)

    def filter_changed(self) -> None:
        self._show_deployments()

    def _show_deployments(self) -> None:
        """The deployments passing the row filter; the cursor stays on its deployment."""
        table = self.query_one("#deploy-table", DataTable)
        current = self._under_cursor()
        shown = [d for d in self.deployments if self.matches(d.name, d.model, d.alias)]
        rows = [
            (
                d.name,
                d.model,
                canary_text.version_cell(d.version, self.releases.get(d.name)),
                d.alias or "-",
                d.state,
                d.health,
                str(d.port or "-"),
                fmt.since(d.started_at),
            )
            for d in shown
        ]
        names = [d.name for d in shown]
        row = table.cursor_row
        tables.fill(table, COLUMNS, rows, names)
        if current is not None and current.name in names:
            table.move_cursor(row=names.index(current.name))
        elif shown:
            table.move_cursor(row=min(row, table.row_count - 1))
        if not self.deployments:
            self.set_pane_status("no deployments (mlops deploy up MODEL@champion)")
        else:
            self.set_pane_status(
                f"{self.filtered(len(shown), len(self.deployments), 'deployment')} · "
                f"refreshed every {self.mlops.refresh_interval:g}s"
            )

    def _selected(self) -> Deployment | None:
        selected = self._under_cursor()
        if selected is None:
            self.notify("no deployment selected", severity="warning")
        return selected

    def _under_cursor(self) -> Deployment | None:
        table = self.query_one("#deploy-table", DataTable)
        if table.row_count == 0:
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
        if d is not None:
            self._plan_take_down(d.name)

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _plan_take_down(self, name: str) -> None:
        try:
            plan = self.deployments_of.plan_take_down(name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("take down", exc))
        else:
            self.post_message(TakeDownPlanned(plan))

    def on_take_down_planned(self, message: TakeDownPlanned) -> None:
        plan = message.plan

        def confirmed(yes: bool | None) -> None:
            if yes and self._claim(plan.name):
                self._take_down(plan)

        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen
        self.app.push_screen(
            ConfirmModal(
                f"Take down {plan.name}?", take_down_summary(plan), confirm_label="Take down"
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _take_down(self, plan: TakeDownPlan) -> None:
        def take_down(_: LogLine) -> Message:
            outcome = self.deployments_of.take_down(plan)
            return DeploymentChanged(
                plan.name, f"{plan.name} taken down ({len(outcome.removed)} containers)"
            )

        self._run_task(f"taking down {plan.name}", "take down", take_down, plan.name)

    def action_rollback(self) -> None:
        if self.refuse_if_read_only("rollback"):
            return
        d = self._selected()
        if d is not None:
            self._prepare_rollback(d)

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _prepare_rollback(self, d: Deployment) -> None:
        try:
            plan = self.deployments_of.plan_rollback(d.name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("roll back", exc))
        else:
            self.post_message(RollbackPlanned(plan))

    def on_rollback_planned(self, message: RollbackPlanned) -> None:
        plan = message.plan

        def confirmed(yes: bool | None) -> None:
            if yes and self._claim(plan.name):
                self._rollback(plan)

        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen
        self.app.push_screen(
            ConfirmModal(
                f"Roll back {plan.name}?", rollback_summary(plan), confirm_label="Roll back"
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _rollback(self, plan: RollbackPlan) -> None:
        def rollback(log: LogLine) -> Message:
            outcome = self.deployments_of.rollback(plan, log)
            return DeploymentChanged(plan.name, rolled_back(outcome))

        task = f"rolling back {plan.name} to v{plan.to_version}"
        self._run_task(task, "roll back", rollback, plan.name)

    # ------------------------------------------------------------------ build and deploy

    def action_build(self) -> None:
        if self.refuse_if_read_only("build"):
            return
        from console.modals.deploy_forms import BuildForm

        d = self._under_cursor()
        reference = f"{d.model}/{d.version}" if d is not None and d.model and d.version else ""

        def chosen(reference: str | None) -> None:
            if reference:
                self._build(reference)

        self.app.push_screen(BuildForm(reference), chosen)

    @work(thread=True, exit_on_error=False, group="image-builds")
    def _build(self, reference: str) -> None:
        def build(log: LogLine) -> Message:
            return ImageBuilt(self.deployments_of.build_image(reference, log))

        self._run_task(f"building {reference}", "build", build)

    def on_image_built(self, message: ImageBuilt) -> None:
        outcome = message.outcome
        image = outcome.image
        self.notify(
            f"{image.tags[0] if image.tags else image.id} (id {image.id}) serves "
            f"{image.model} v{image.version}"
            + (" · unchanged: every step from cache" if outcome.cached else " · newly built"),
            title="Image up to date" if outcome.cached else "Image built",
            timeout=12,
        )

    def action_deploy(self) -> None:
        if self.refuse_if_read_only("deploy"):
            return
        from console.modals.deploy_forms import DeployRequest

        d = self._under_cursor()
        self._deploy_form(DeployRequest.over(d) if d is not None and d.model else DeployRequest())

    def _deploy_form(self, request: DeployRequest) -> None:
        from console.modals.deploy_forms import DeployForm

        def chosen(request: DeployRequest | None) -> None:
            if request is not None:
                self._plan_deploy(request)

        self.app.push_screen(DeployForm(request), chosen)

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _plan_deploy(self, r: DeployRequest) -> None:
        try:
            plan = self.deployments_of.plan_deploy(
                r.reference, r.name or None, r.port, r.host, r.follow_alias
            )
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(DeployPlanFailed("deploy", exc, r))
        else:
            self.post_message(DeployPlanned(plan))

    def on_deploy_plan_failed(self, message: DeployPlanFailed) -> None:
        if self.app.screen is not self:  # the operator went elsewhere: no dialog over it
            error = message.error
            self.notify(str(error), title=getattr(error, "title", "Deploy"), severity="error")
            return
        self.app.push_screen(
            ErrorModal(message.error), lambda _: self._deploy_form(message.request)
        )

    def on_deploy_planned(self, message: DeployPlanned) -> None:
        plan = message.plan

        def confirmed(yes: bool | None) -> None:
            if yes and self._claim(plan.name):
                self._deploy(plan)

        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen
        v = plan.version
        self.app.push_screen(
            ConfirmModal(
                f"Deploy {v.name} v{v.version}?", deploy_summary(plan), confirm_label="Deploy"
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _deploy(self, plan: DeployPlan) -> None:
        def deploy(log: LogLine) -> Message:
            return DeploymentChanged(plan.name, deployed(self.deployments_of.deploy(plan, log)))

        self._run_task(f"deploying {plan.name}", "deploy", deploy, plan.name)

    def on_deployment_changed(self, message: DeploymentChanged) -> None:
        self.notify(message.summary, title="Deployment changed")
        self.load()
