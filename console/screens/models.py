"""Models: registered models → versions with aliases and metrics; promote, approve a waiting
challenger, roll back, history."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable

from backends.defaults import CHALLENGER, CHAMPION
from backends.errors import GateFailed
from backends.records import (
    AliasRollbackPlan,
    ApprovePlan,
    ModelVersion,
    PromotePlan,
    RegisteredModel,
)
from console import format as fmt
from console.capabilities import Registry
from console.messages import (
    AliasMoved,
    AliasRollbackPlanned,
    ApprovePlanned,
    BackendFailed,
    ModelsLoaded,
    PromotePlanned,
    VersionsLoaded,
)
from console.modals.confirm import ConfirmModal
from console.modals.message import MessageModal
from console.plans import alias_rollback_summary, approve_summary, gate_failure, promote_summary
from console.screens.base import ResourceScreen
from console.widgets import tables


class ModelsScreen(ResourceScreen):
    """Models on the left, the highlighted model's versions on the right."""

    RESOURCE = "models"
    FILTER = "a model name or alias"
    FILTER_TARGET = "#models-table"
    MUTATING: ClassVar[dict[str, str]] = {
        "promote": "promote",
        "promote_challenger": "promote",
        "rollback": "roll back",
        "approve": "approve",
    }
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("p", "promote", "Promote", id="models.promote", tooltip="champion → this version"),
        Binding(
            "P",
            "promote_challenger",
            "Challenger",
            id="models.challenger",
            tooltip="challenger → this version",
        ),
        Binding(
            "A",
            "approve",
            "Approve",
            id="models.approve",
            tooltip="champion → the challenger waiting for approval",
        ),
        Binding("r", "rollback", "Roll back", id="models.rollback", tooltip="champion back a step"),
        Binding("h", "history", "History", id="models.history", tooltip="Every alias move"),
        Binding("slash", "filter", "Filter", id="models.filter", tooltip="Narrow the models"),
        Binding("escape", "clear_filter", "Back", id="models.escape", show=False),
        Binding("tab", "switch_table", "Models/versions", id="models.tab", show=False),
        Binding("ctrl+r", "reload", "Reload", id="models.reload", tooltip="Load again"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.models: dict[str, RegisteredModel] = {}
        self.versions: list[ModelVersion] = []
        self.model: str | None = None
        self._chosen: str | None = None  # the model last selected (a filter may hide it)

    @property
    def registry(self) -> Registry:
        """The one capability this screen uses."""
        return self.mlops.services.registry

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="models-body"):
            yield tables.Table(id="models-table", cursor_type="row")
            yield tables.Table(id="versions-table", cursor_type="row", zebra_stripes=True)

    def body_mounted(self) -> None:
        self.set_pane_status("loading registered models…")
        self.load()

    def on_screen_resume(self) -> None:
        if self.models:
            self.load()

    def load(self) -> None:
        self._load_models()

    def action_reload(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="models")
    def _load_models(self) -> None:
        try:
            models = self.registry.list_models()
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(ModelsLoaded(models))

    @work(thread=True, exclusive=True, exit_on_error=False, group="versions")
    def _load_versions(self, model: str) -> None:
        try:
            versions = self.registry.versions(model)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(VersionsLoaded(model, versions))

    def on_models_loaded(self, message: ModelsLoaded) -> None:
        self.loaded()
        self.models = {m.name: m for m in message.models}
        self._show_models(reload_versions=True)

    def filter_changed(self) -> None:
        self._show_models(reload_versions=False)

    def _show_models(self, *, reload_versions: bool) -> None:
        """The models passing the row filter; the selection stays on its model when it can."""
        table = self.query_one("#models-table", DataTable)
        shown = [m for m in self.models.values() if self.matches(m.name, *m.aliases)]
        rows = [
            (
                m.name,
                " ".join(f"{a}=v{v}" for a, v in sorted(m.aliases.items())) or "-",
                f"v{m.latest_version}" if m.latest_version else "-",
            )
            for m in shown
        ]
        tables.fill(table, ("model", "aliases", "latest"), rows, [m.name for m in shown])
        if not self.models:
            self.set_pane_status("no registered models (mlops models register RUN_ID --name NAME)")
        else:
            self.set_pane_status(self.filtered(len(shown), len(self.models), "registered model"))
        names = [m.name for m in shown]
        if not names:
            self._select(None)
            return
        # The model last chosen, even when a filter hid it for a while.
        keep = self.model or self._chosen
        if keep in names:
            table.move_cursor(row=names.index(keep))
        chosen = keep if keep in names else names[0]
        if reload_versions or chosen != self.model:
            self._select(chosen)

    @on(DataTable.RowHighlighted, "#models-table")
    def _model_highlighted(self, event: DataTable.RowHighlighted) -> None:
        name = str(event.row_key.value)
        if name != self.model:
            self._select(name)

    def _select(self, model: str | None) -> None:
        """Show ``model``'s versions: the old model's go at once, so that no key acts on a
        version of one model under the other's name while the new ones load."""
        if model is not None:
            self._chosen = model
        if model != self.model:
            self.versions = []
            self.query_one("#versions-table", DataTable).clear()
        self.model = model
        if model is not None:
            self._load_versions(model)

    def on_versions_loaded(self, message: VersionsLoaded) -> None:
        if message.model != self.model:
            return
        self.versions = message.versions
        table = self.query_one("#versions-table", DataTable)
        keys = sorted({k for v in message.versions for k in v.metrics})[:3]
        rows = [
            (
                f"v{v.version}",
                _aliases(v),
                v.status + (f" ({v.stage})" if v.stage and v.stage != "None" else ""),
                *(fmt.number(v.metrics.get(k)) for k in keys),
                (v.run_id or "-")[:8],
                fmt.when(v.created),
            )
            for v in message.versions
        ]
        headings = ("version", "aliases", "status", *keys, "run", "created")
        tables.fill(table, headings, rows, [str(v.version) for v in message.versions])

    def action_switch_table(self) -> None:
        models = self.query_one("#models-table", DataTable)
        versions = self.query_one("#versions-table", DataTable)
        (versions if models.has_focus else models).focus()

    # ------------------------------------------------------------------ moves

    def _selected_version(self) -> ModelVersion | None:
        table = self.query_one("#versions-table", DataTable)
        if self.model is None or table.row_count == 0:
            self.notify("no version selected", severity="warning")
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((v for v in self.versions if str(v.version) == key), None)

    def action_promote(self, alias: str = CHAMPION) -> None:
        if self.refuse_if_read_only("promote"):
            return
        version = self._selected_version()
        if version is None or self.model is None:
            return
        self._plan_promote(self.model, version.version, alias)

    def action_promote_challenger(self) -> None:
        self.action_promote(CHALLENGER)

    @work(thread=True, exit_on_error=False, group="moves")
    def _plan_promote(self, model: str, version: int, alias: str) -> None:
        try:
            plan = self.registry.plan_promote(model, version, alias)
            # The gate runs before the dialog, so the person confirms having seen its report
            # (it runs again as the alias moves: the version may have changed meanwhile).
            gate = self.registry.validate(model, version, alias) if plan.moves else None
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("promote", exc))
            return
        if gate is not None and not gate.passed:
            self.post_message(BackendFailed("promote", GateFailed(gate_failure(gate))))
            return
        self.post_message(PromotePlanned(plan, gate))

    def on_promote_planned(self, message: PromotePlanned) -> None:
        plan = message.plan
        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen
        if not plan.moves:
            self.notify(f"{plan.alias} of {plan.model} already points at version {plan.version}")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.set_pane_status(f"promoting {plan.model} v{plan.version} to {plan.alias}…")
                self._promote(plan)

        self.app.push_screen(
            ConfirmModal(
                f"Promote {plan.model}?",
                promote_summary(plan, message.gate),
                confirm_label="Promote",
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="moves")
    def _promote(self, plan: PromotePlan) -> None:
        try:
            gate, event = self.registry.promote(plan)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("promote", exc))
        else:
            self.post_message(AliasMoved(plan.model, plan.alias, event, gate))

    def action_approve(self) -> None:
        """Approve the challenger waiting on the selected model (the selected version when it
        is the challenger): the dialog shows its trigger and gate report before anything."""
        if self.refuse_if_read_only("approve"):
            return
        if self.model is None:
            self.notify("no model selected", severity="warning")
            return
        waiting = next((v for v in self.versions if _waits(v)), None)
        if waiting is None:
            self.notify(f"no challenger of {self.model} waits for approval", severity="warning")
            return
        self._plan_approve(self.model, waiting.version)

    @work(thread=True, exit_on_error=False, group="moves")
    def _plan_approve(self, model: str, version: int) -> None:
        try:
            plan = self.registry.plan_approve(model, version)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("approve", exc))
        else:
            self.post_message(ApprovePlanned(plan))

    def on_approve_planned(self, message: ApprovePlanned) -> None:
        plan = message.plan
        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.set_pane_status(f"approving {plan.model} v{plan.version}…")
                self._approve(plan)

        self.app.push_screen(
            ConfirmModal(
                f"Approve {plan.model} v{plan.version}?",
                approve_summary(plan),
                confirm_label="Approve",
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="moves")
    def _approve(self, plan: ApprovePlan) -> None:
        try:
            gate, event = self.registry.approve(plan)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("approve", exc))
        else:
            self.post_message(AliasMoved(plan.model, CHAMPION, event, gate))

    def action_rollback(self, alias: str = CHAMPION) -> None:
        if self.refuse_if_read_only("rollback"):
            return
        if self.model is None:
            return
        self._plan_rollback(self.model, alias)

    @work(thread=True, exit_on_error=False, group="moves")
    def _plan_rollback(self, model: str, alias: str) -> None:
        try:
            plan = self.registry.plan_rollback(model, alias)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("rollback", exc))
        else:
            self.post_message(AliasRollbackPlanned(plan))

    def on_alias_rollback_planned(self, message: AliasRollbackPlanned) -> None:
        plan = message.plan
        if self.app.screen is not self:
            return  # the operator went elsewhere meanwhile: no dialog over another screen

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._rollback(plan)

        self.app.push_screen(
            ConfirmModal(
                f"Roll back {plan.model}?", alias_rollback_summary(plan), confirm_label="Roll back"
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="moves")
    def _rollback(self, plan: AliasRollbackPlan) -> None:
        try:
            event = self.registry.rollback(plan)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("rollback", exc))
        else:
            self.post_message(AliasMoved(plan.model, plan.alias, event))

    def on_alias_moved(self, message: AliasMoved) -> None:
        event = message.event
        moved = (
            f"{message.alias} of {message.model}: "
            f"v{event.from_version or '-'} → v{event.to_version}"
            if event
            else f"{message.alias} of {message.model} already pointed there"
        )
        self.notify(moved, title="Alias moved")
        self.set_pane_status(moved)
        if message.gate is not None:
            checks = "\n".join(
                f"{'✓' if c.passed else '✗'} {c.name}: {c.detail}" for c in message.gate.checks
            )
            self.app.push_screen(MessageModal(f"Gate passed — {moved}", checks or "no checks"))
        self.load()

    def action_history(self) -> None:
        if self.model is None:
            self.notify("no model selected", severity="warning")
            return
        from console.screens.alias_history import AliasHistoryScreen

        self.app.push_screen(AliasHistoryScreen(self.model))


def _waits(version: ModelVersion) -> bool:
    """The challenger, not (yet) champion: it waits for a person's approval."""
    return CHALLENGER in version.aliases and CHAMPION not in version.aliases


def _aliases(version: ModelVersion) -> str:
    shown = " ".join(version.aliases) or "-"
    return f"{shown} ⏳ waits for approval (A)" if _waits(version) else shown
