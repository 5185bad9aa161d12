"""Ask before anything destructive or production-moving, saying exactly what will change."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmModal(ModalScreen[bool]):
    """`y`/enter confirms, `n`/esc cancels; the body says what will change."""

    BINDINGS = [
        Binding("y", "confirm", "Yes", id="confirm.yes", tooltip="Do it"),
        Binding("n,escape", "cancel", "No", id="confirm.no", tooltip="Change nothing"),
    ]

    def __init__(self, title: str, body: str, *, confirm_label: str = "Yes") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.confirm_label = confirm_label

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            # A long body (a gate report) scrolls; the buttons stay on screen.
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(self.body, classes="dialog-body", id="confirm-body", markup=False)
            with Horizontal(classes="dialog-buttons"):
                yield Button(f"{self.confirm_label} (y)", variant="warning", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
