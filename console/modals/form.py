"""A titled dialog of labelled rows: what the console's forms (deploy, build, silence) share."""

from __future__ import annotations

from typing import TypeVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from backends.errors import InvalidInput

Result = TypeVar("Result")


class Form(ModalScreen[Result]):
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
