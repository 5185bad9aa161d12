"""`b` and `u` on the Deployments screen: which version to build, and what to deploy where.

The forms check only what they can without a backend (the reference's shape, the name, the
port); everything else is the backend's to say, in the error modal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from backends.defaults import DEFAULT_HOST, DEFAULT_PORT
from backends.errors import InvalidInput
from backends.lifecycle.deploy import check_name
from backends.mlflow.models import parse_reference
from backends.records import Deployment

Result = TypeVar("Result")


@dataclass(frozen=True)
class DeployRequest:
    """What the operator asked to deploy (``name`` empty: the model's name)."""

    reference: str = ""
    name: str = ""
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    follow_alias: bool = False

    @classmethod
    def over(cls, d: Deployment) -> DeployRequest:
        """A request to deploy again over ``d``, through its alias when it has one."""
        reference = f"{d.model}@{d.alias}" if d.alias else f"{d.model}/{d.version}"
        return cls(reference, d.name, d.host, d.port or DEFAULT_PORT, d.follow_alias)


class _Form(ModalScreen[Result]):
    """A titled dialog of labelled rows, an error line and two buttons; enter submits."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="form.cancel", tooltip="Change nothing")]
    TITLE_TEXT = ""
    SUBMIT = "OK"

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Static(self.TITLE_TEXT, classes="dialog-title", markup=False)
            yield from self.compose_rows()
            yield Static("", id="form-error", classes="form-error", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.SUBMIT} (enter)", variant="primary", id="form-submit")
                yield Button("Cancel (esc)", id="form-cancel")

    def compose_rows(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @staticmethod
    def _row(label: str, field: Input | Checkbox) -> Horizontal:
        return Horizontal(Label(label, classes="form-label"), field, classes="form-row")

    def _show_error(self, text: str) -> None:
        self.query_one("#form-error", Static).update(text)

    @on(Input.Submitted)
    @on(Button.Pressed, "#form-submit")
    def _submit(self) -> None:
        try:
            result = self.result()
        except (InvalidInput, ValueError) as exc:
            self._show_error(str(exc))
            return
        self.dismiss(result)

    @on(Button.Pressed, "#form-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def result(self) -> Result:
        """What the form dismisses with; InvalidInput or ValueError keeps it open, saying why."""
        raise NotImplementedError

    def _value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()


class BuildForm(_Form[str | None]):
    """Which version to build a serving image of; dismisses with the reference, or None."""

    TITLE_TEXT = "Build a serving image"
    SUBMIT = "Build"

    def __init__(self, reference: str = "") -> None:
        super().__init__()
        self.reference = reference

    def compose_rows(self) -> ComposeResult:
        yield self._row(
            "model",
            Input(
                self.reference,
                placeholder="NAME/VERSION or NAME@ALIAS",
                id="build-ref",
                compact=True,
            ),
        )
        yield Static(
            "The same build as `mlops image build`: cached when nothing changed.",
            classes="dialog-hint",
        )

    def result(self) -> str | None:
        reference = self._value("build-ref")
        parse_reference(reference)
        return reference


class DeployForm(_Form[DeployRequest | None]):
    """What to deploy, under which name, on which address; dismisses with a DeployRequest."""

    TITLE_TEXT = "Deploy a model version"
    SUBMIT = "Review"

    def __init__(self, request: DeployRequest) -> None:
        super().__init__()
        self.request = request

    def compose_rows(self) -> ComposeResult:
        r = self.request
        yield self._row(
            "model",
            Input(
                r.reference, placeholder="NAME@ALIAS or NAME/VERSION", id="deploy-ref", compact=True
            ),
        )
        yield self._row(
            "name",
            Input(r.name, placeholder="default: the model's name", id="deploy-name", compact=True),
        )
        yield self._row("host", Input(r.host, id="deploy-host", compact=True))
        yield self._row("port", Input(str(r.port), type="integer", id="deploy-port", compact=True))
        yield self._row(
            "",
            Checkbox(
                "follow the alias (reload when it moves)",
                r.follow_alias,
                id="deploy-follow",
                compact=True,
            ),
        )
        yield Static(
            "Nothing changes yet: the next step shows what this deploy will do.",
            classes="dialog-hint",
        )

    def result(self) -> DeployRequest | None:
        reference = self._value("deploy-ref")
        _, alias, _ = parse_reference(reference)
        name = self._value("deploy-name")
        if name:
            check_name(name)
        port = int(self._value("deploy-port") or "0")
        if not 0 < port < 65536:
            raise ValueError(f"port {port} is not between 1 and 65535")
        follow = self.query_one("#deploy-follow", Checkbox).value
        if follow and not alias:
            raise ValueError("only a NAME@ALIAS reference can be followed")
        host = self._value("deploy-host") or DEFAULT_HOST
        return DeployRequest(reference, name, host, port, follow)
