"""Train: run an MLflow Project with parameters, stream its log, then offer to register."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label, RichLog

from console.capabilities import Runs
from console.config import default_project
from console.messages import (
    BackendFailed,
    ModelRegistered,
    ProjectLoaded,
    TrainingEnded,
    TrainingOutput,
)
from console.modals.confirm import ConfirmModal
from console.screens.base import ResourceScreen

if TYPE_CHECKING:
    from backends.records import ProjectParameter


class TrainScreen(ResourceScreen):
    """The project's parameters as a form (from its MLproject), then the live training log."""

    @property
    def runs_of(self) -> Runs:
        """The one capability this screen uses."""
        return self.mlops.services.runs

    RESOURCE = "runs"
    MUTATING: ClassVar[dict[str, str]] = {"start": "training"}
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("ctrl+s", "start", "Start", id="train.start", tooltip="Start the training"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.running = False
        self.parameters: list[ProjectParameter] = []
        self._project = ""  # the project whose parameters the form shows

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="train-row"):
            yield Label("project", classes="train-label")
            yield Input(str(default_project()), id="train-project", compact=True)
        yield Vertical(id="train-params")
        with Horizontal(classes="train-row"):
            yield Label("register as", classes="train-label")
            yield Input(placeholder="model name (optional)", id="train-register", compact=True)
            yield Button("Start (ctrl+s)", id="train-start", variant="primary", compact=True)
        yield RichLog(id="train-log", max_lines=5000, markup=False, highlight=False)

    def body_mounted(self) -> None:
        self.set_pane_status("train an MLflow Project (env-manager local)")
        self._load_project(self.query_one("#train-project", Input).value.strip())

    # ------------------------------------------------------------------ the form

    @work(thread=True, exclusive=True, exit_on_error=False, group="project")
    def _load_project(self, project: str) -> None:
        try:
            parameters = self.runs_of.project_parameters(project)
        except Exception as exc:  # a path that is no project is shown, never raised
            self.post_message(BackendFailed("project", exc))
        else:
            self.post_message(ProjectLoaded(project, parameters))

    async def on_project_loaded(self, message: ProjectLoaded) -> None:
        self._project = message.project
        self.parameters = message.parameters
        box = self.query_one("#train-params", Vertical)
        await box.remove_children()
        rows = []
        for p in message.parameters:
            field = Input(
                p.default or "",
                placeholder="required" if p.default is None else "",
                id=f"param-{p.name}",
                classes="param",
                compact=True,
            )
            label = Label(f"{p.name} ({p.type})", classes="train-label param-label")
            rows.append(Horizontal(label, field, classes="train-row"))
        await box.mount_all(rows)
        first = box.query(Input)
        (first.first() if first else self.query_one("#train-register", Input)).focus()
        # Said last: once this shows, the form is complete and focused (tests wait for it).
        self.set_pane_status(
            f"{message.project}: {len(message.parameters)} parameters from its MLproject · "
            "ctrl+s starts"
        )

    def on_backend_failed(self, message: BackendFailed) -> None:
        # Textual also runs ResourceScreen's handler after this one (the error modal), unless
        # the default is prevented: a project path that is no project is said in the pane.
        self.running = False
        if message.what == "project":
            message.prevent_default()
            message.stop()
            error = message.error
            self.set_pane_status(f"{getattr(error, 'message', error)}", error=True)
            # The old form belonged to another project: nothing of it may be started now.
            self.parameters, self._project = [], ""
            self.query_one("#train-params", Vertical).remove_children()

    def params(self) -> dict[str, str]:
        """Values that differ from the MLproject's defaults; ValueError for a missing one."""
        chosen: dict[str, str] = {}
        for p in self.parameters:
            value = self.query_one(f"#param-{p.name}", Input).value.strip()
            if p.default is None and not value:
                raise ValueError(f"parameter {p.name} needs a value")
            if value != (p.default or ""):
                chosen[p.name] = value
        return chosen

    @on(Button.Pressed, "#train-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "train-project" and event.value.strip() != self._project:
            self._load_project(event.value.strip())  # a new project: its own form first
            return
        self.action_start()

    def action_start(self) -> None:
        if self.refuse_if_read_only("start"):
            return
        if self.running:
            self.notify("a training is already running", severity="warning")
            return
        project = self.query_one("#train-project", Input).value.strip()
        if project != self._project:
            self._load_project(project)
            self.notify("loaded the project's parameters: check them, then ctrl+s")
            return
        try:
            params = self.params()
        except ValueError as exc:
            self.notify(str(exc), severity="error")
            return
        self.running = True
        self.query_one("#train-log", RichLog).clear()
        self.set_pane_status(f"training {project}…")
        self._train(project, params)

    @work(thread=True, exclusive=True, exit_on_error=False, group="train")
    def _train(self, project: str, params: dict[str, str]) -> None:
        try:
            outcome = self.runs_of.train(
                project, params, lambda line: self.post_message(TrainingOutput([line]))
            )
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("train", exc))
        else:
            self.post_message(TrainingEnded(outcome))

    def on_training_output(self, message: TrainingOutput) -> None:
        log = self.query_one("#train-log", RichLog)
        for line in message.lines:
            log.write(line)

    def on_training_ended(self, message: TrainingEnded) -> None:
        self.running = False
        o = message.outcome
        ok = o.exit_code == 0 and o.run_id is not None
        self.set_pane_status(
            f"run {o.run_id or '(none)'}: {o.status or 'unknown'}, exit {o.exit_code} · "
            f"log {o.log_path}",
            error=not ok,
        )
        name = self.query_one("#train-register", Input).value.strip()
        if not ok or o.run_id is None or not name:
            return
        run_id = o.run_id

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._register(run_id, name)

        body = f"Register the model logged by run {run_id}\n  as a new version of '{name}'"
        self.app.push_screen(ConfirmModal("Register the model?", body), confirmed)

    @work(thread=True, exit_on_error=False, group="register")
    def _register(self, run_id: str, name: str) -> None:
        try:
            version = self.runs_of.register(run_id, name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("register", exc))
        else:
            self.post_message(ModelRegistered(version))

    def on_model_registered(self, message: ModelRegistered) -> None:
        v = message.version
        self.notify(f"registered {v.name} version {v.version}", title="Registered")
        self.set_pane_status(f"registered {v.name} version {v.version} (:models to promote it)")
