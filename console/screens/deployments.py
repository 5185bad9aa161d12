"""Deployments: the live map of serving containers; build, deploy, logs, roll back, take down.

Build, deploy and roll back run the very backend operations of `mlops image build`,
`mlops deploy up` and `mlops deploy rollback` (backends.deploy_ops), in workers; their progress
shows on one line under the table while they run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable, Static

from backends.records import Deployment
from console import format as fmt
from console.messages import (
    BackendFailed,
    DeploymentChanged,
    DeploymentsLoaded,
    DeployPlanFailed,
    DeployPlanned,
    DeployProgressed,
    DeployTaskEnded,
    ImageBuilt,
    RollbackPlanned,
)
from console.modals.confirm import ConfirmModal
from console.modals.message import ErrorModal
from console.screens.base import PollingScreen
from console.widgets import tables

if TYPE_CHECKING:
    from backends.records import DeployOutcome, DeployPlan, RollbackOutcome, RollbackPlan
    from console.modals.deploy_forms import DeployRequest

LogLine = Callable[[str], None]


COLUMNS = ("name", "model", "version", "alias", "state", "health", "port", "uptime")


class DeploymentsScreen(PollingScreen):
    """Refreshed every few seconds while shown (the next refresh is scheduled after the last)."""

    RESOURCE = "deploy"
    FILTER = "a deployment, model or alias name"
    FILTER_TARGET = "#deploy-table"
    MUTATING: ClassVar[dict[str, str]] = {
        "build": "image build",
        "deploy": "deploy",
        "rollback": "roll back",
        "take_down": "take down",
    }
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("b", "build", "Build", id="deploy.build", tooltip="Build a version's image"),
        Binding("u", "deploy", "Deploy", id="deploy.up", tooltip="Deploy a version"),
        Binding("l", "logs", "Logs", id="deploy.logs", tooltip="Follow the deployment's logs"),
        Binding("R", "rollback", "Roll back", id="deploy.rollback", tooltip="Previous version"),
        Binding("d", "take_down", "Take down", id="deploy.down", tooltip="Remove the deployment"),
        Binding("ctrl+r", "reload", "Reload", id="deploy.reload", tooltip="Refresh now"),
        Binding("slash", "filter", "Filter", id="deploy.filter", tooltip="Narrow the list"),
        Binding("escape", "clear_filter", "Back", id="deploy.escape", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.deployments: list[Deployment] = []
        self.tasks: dict[str, str] = {}  # running build/deploy/rollback → its latest line
        self.changing: set[str] = set()  # deployments with a deploy/rollback/take-down running

    def compose_body(self) -> ComposeResult:
        yield tables.Table(id="deploy-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="deploy-tasks", markup=False)

    def body_mounted(self) -> None:
        tables.fill(self.query_one("#deploy-table", DataTable), COLUMNS, [], [])
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
        self._show_deployments()
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
                f"v{d.version}" if d.version else "-",
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
        if d is None:
            return
        body = (
            f"Take down deployment '{d.name}'\n"
            f"  serving {d.model} v{d.version or '?'} on port {d.port or '-'}\n\n"
            "Its router and model containers are stopped and removed; clients of "
            f"{d.url or 'its address'} get no answer afterwards."
        )

        def confirmed(yes: bool | None) -> None:
            if yes and self._claim(d.name):
                self._take_down(d.name)

        self.app.push_screen(
            ConfirmModal(f"Take down {d.name}?", body, confirm_label="Take down"), confirmed
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _take_down(self, name: str) -> None:
        def take_down(_: LogLine) -> Message:
            removed = self.mlops.backends.remove_deployment(name)
            return DeploymentChanged(name, f"{name} taken down ({len(removed)} containers)")

        self._run_task(f"taking down {name}", "take down", take_down, name)

    def action_rollback(self) -> None:
        if self.refuse_if_read_only("rollback"):
            return
        d = self._selected()
        if d is not None:
            self._prepare_rollback(d)

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _prepare_rollback(self, d: Deployment) -> None:
        try:
            plan = self.mlops.backends.plan_rollback(d.name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("roll back", exc))
        else:
            self.post_message(RollbackPlanned(plan))

    def on_rollback_planned(self, message: RollbackPlanned) -> None:
        plan = message.plan

        def confirmed(yes: bool | None) -> None:
            if yes and self._claim(plan.name):
                self._rollback(plan.name, plan.to_version)

        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen
        self.app.push_screen(
            ConfirmModal(
                f"Roll back {plan.name}?", rollback_summary(plan), confirm_label="Roll back"
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _rollback(self, name: str, target: str) -> None:
        def rollback(log: LogLine) -> Message:
            outcome = self.mlops.backends.rollback_deployment(name, target, log)
            return DeploymentChanged(name, rolled_back(outcome))

        self._run_task(f"rolling back {name} to v{target}", "roll back", rollback, name)

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
            return ImageBuilt(self.mlops.backends.build_image(reference, log))

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
            plan = self.mlops.backends.plan_deploy(
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
        v = plan.resolved
        self.app.push_screen(
            ConfirmModal(
                f"Deploy {v.name} v{v.version}?", deploy_summary(plan), confirm_label="Deploy"
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _deploy(self, plan: DeployPlan) -> None:
        def deploy(log: LogLine) -> Message:
            return DeploymentChanged(plan.name, deployed(self.mlops.backends.deploy(plan, log)))

        self._run_task(f"deploying {plan.name}", "deploy", deploy, plan.name)

    # ------------------------------------------------------------------ running tasks

    def _claim(self, name: str) -> bool:
        """One change at a time per deployment: two switches of one router would each remove
        the container the other just started."""
        if name in self.changing:
            self.notify(
                f"a change to {name} is still running: wait for it to finish",
                title="Busy",
                severity="warning",
            )
            return False
        self.changing.add(name)
        return True

    def _run_task(
        self, task: str, what: str, run: Callable[[LogLine], Message], claimed: str = ""
    ) -> None:
        """In a worker: ``run`` with its log lines shown under the table; post what it returns,
        or its failure for the error modal; then release the ``claimed`` deployment."""

        def progressed(line: str) -> None:
            if line.strip() and not line.startswith((" --->", "Removing intermediate")):
                self.post_message(DeployProgressed(task, line.strip()))

        self.post_message(DeployProgressed(task, ""))
        try:
            result = run(progressed)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed(what, exc))
        else:
            self.post_message(result)
        finally:
            self.post_message(DeployTaskEnded(task, claimed))

    def on_deploy_progressed(self, message: DeployProgressed) -> None:
        self.tasks[message.task] = message.line
        self._show_tasks()

    def on_deploy_task_ended(self, message: DeployTaskEnded) -> None:
        self.tasks.pop(message.task, None)
        self.changing.discard(message.claimed)
        self._show_tasks()

    def _show_tasks(self) -> None:
        lines = [f"{task}… {line}".rstrip() for task, line in self.tasks.items()]
        panel = self.query_one("#deploy-tasks", Static)
        panel.update("\n".join(lines))
        panel.set_class(bool(lines), "running")

    def on_deployment_changed(self, message: DeploymentChanged) -> None:
        self.notify(message.summary, title="Deployment changed")
        self.load()


# ---------------------------------------------------------------------- what the modals say


def deploy_summary(plan: DeployPlan) -> str:
    """Exactly what a deploy will change, from its plan."""
    v = plan.resolved
    where = f"{plan.host}:{plan.port}"
    if plan.current is None:
        change = "new deployment"
        how = f"A router and v{v.version}'s model container start on {where}."
    else:
        change = f"replacing v{plan.replaces}"
        if plan.replaces == v.version:
            change += " (the same version, in a fresh container)"
        how = (
            f"v{v.version}'s container starts, the router switches once it is ready "
            f"(no failed request), then v{plan.replaces}'s container is removed."
        )
    lines = [f"Deploy {v.name} v{v.version} as {plan.name} on {where}, {change}", ""]
    if v.alias:
        lines.append(f"  {plan.reference} names v{v.version} now")
    if plan.image is None:
        lines += [
            f"  no image of v{v.version} yet: it is built first (minutes),",
            f"  as `b` or `mlops image build {v.name}/{v.version}` would",
        ]
    else:
        lines.append(f"  image {plan.image.tags[0] if plan.image.tags else plan.image.id} (built)")
    if plan.follow_alias:
        lines.append(f"  follows {v.alias}: reloads by itself when the alias moves")
    return "\n".join([*lines, "", how])


def rollback_summary(plan: RollbackPlan) -> str:
    """Exactly what a deployment rollback will change."""
    head = f"Roll back deployment '{plan.name}' ({plan.model})"
    if plan.alias:
        return (
            f"{head}\n  it follows {plan.alias}: {plan.model}@{plan.alias} moves back\n"
            f"  from version {plan.from_version}\n  to   version {plan.to_version}\n\n"
            "The deployment reloads in place when the alias moves (no restart)."
        )
    build = (
        f"\n\nNo image of v{plan.to_version} is left: it is built first (minutes)."
        if plan.image_missing
        else ""
    )
    return (
        f"{head}\n  from version {plan.from_version}\n  to   version {plan.to_version}\n\n"
        "The previous version's container starts, the router switches once it is ready "
        f"(no failed request), then the current one is removed.{build}"
    )


def deployed(outcome: DeployOutcome) -> str:
    """What a finished deploy changed, in one line."""
    d = outcome.deployment
    text = f"{d.name} now serves {d.model} v{d.version} on {d.url or '-'}"
    text += f" (was v{outcome.replaced})" if outcome.replaced else " (new deployment)"
    text += "; its image was built first" if outcome.built else ""
    return text + (f"; warning: {outcome.warning}" if outcome.warning else "")


def rolled_back(outcome: RollbackOutcome) -> str:
    """What a finished rollback changed, in one line."""
    if outcome.via_alias and outcome.alias_event is None:
        return f"{outcome.alias} already names v{outcome.to_version}; nothing moved"
    if outcome.via_alias:
        return (
            f"{outcome.model}@{outcome.alias} rolled back from v{outcome.from_version} to "
            f"v{outcome.to_version}; {outcome.name} reloads in place"
        )
    text = (
        f"{outcome.name} now serves {outcome.model} v{outcome.to_version} "
        f"(was v{outcome.from_version})"
    )
    return text + (f"; warning: {outcome.warning}" if outcome.warning else "")
