"""Train: run an MLflow Project with parameters, stream its log, then offer to register."""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, RichLog

from console.messages import BackendFailed, ModelRegistered, TrainingEnded, TrainingOutput
from console.modals.confirm import ConfirmModal
from console.screens.base import ResourceScreen
from console.services import default_project


def parse_params(text: str) -> dict[str, str]:
    """``n_estimators=200 seed=7`` → a dict; a word without ``=`` is an error."""
    params: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"parameter {word!r} is not KEY=VALUE")
        params[key] = value
    return params


class TrainScreen(ResourceScreen):
    """A small form (project, parameters, register-as), then the live training log."""

    CSS_PATH = "train.tcss"
    RESOURCE = "runs"
    MUTATING: ClassVar[dict[str, str]] = {"start": "training"}
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("ctrl+s", "start", "Start", id="train.start", tooltip="Start the training"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.running = False

    def compose_body(self) -> ComposeResult:
        with Horizontal(classes="train-row"):
            yield Label("project", classes="train-label")
            yield Input(str(default_project()), id="train-project")
        with Horizontal(classes="train-row"):
            yield Label("params", classes="train-label")
            yield Input(placeholder="n_estimators=200 seed=7", id="train-params")
        with Horizontal(classes="train-row"):
            yield Label("register as", classes="train-label")
            yield Input(placeholder="model name (optional)", id="train-register")
            yield Button("Start (ctrl+s)", id="train-start", variant="primary")
        yield RichLog(id="train-log", max_lines=5000, markup=False, highlight=False)

    def on_mount(self) -> None:
        self.set_pane_status("train an MLflow Project (env-manager local)")
        self.query_one("#train-params", Input).focus()

    @on(Button.Pressed, "#train-start")
    def _start_pressed(self) -> None:
        self.action_start()

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        if self.refuse_if_read_only("start"):
            return
        if self.running:
            self.notify("a training is already running", severity="warning")
            return
        project = self.query_one("#train-project", Input).value.strip()
        try:
            params = parse_params(self.query_one("#train-params", Input).value)
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
            outcome = self.mlops.backends.train(
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

    def on_backend_failed(self, message: BackendFailed) -> None:
        self.running = False
        super().on_backend_failed(message)

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
            version = self.mlops.backends.register(run_id, name)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("register", exc))
        else:
            self.post_message(ModelRegistered(version))

    def on_model_registered(self, message: ModelRegistered) -> None:
        v = message.version
        self.notify(f"registered {v.name} version {v.version}", title="Registered")
        self.set_pane_status(f"registered {v.name} version {v.version} (:models to promote it)")
