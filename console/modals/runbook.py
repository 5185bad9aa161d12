"""`r` on the Alerts screen: the alert's runbook, read where the operator already is."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static


class RunbookModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,r", "close", "Close", id="runbook.close", tooltip="Back")]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self.title_text = title
        self.text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog runbook"):
            yield Static(self.title_text, classes="dialog-title", markup=False)
            yield Markdown(self.text, id="runbook-text")

    def action_close(self) -> None:
        self.dismiss(None)
