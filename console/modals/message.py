"""A backend's error (its title and message), or any other text to read and dismiss."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from backends.errors import BackendError


class MessageModal(ModalScreen[None]):
    """A title and a text; enter or esc closes it."""

    BINDINGS = [
        Binding("escape,enter,q", "close", "Close", id="message.close", tooltip="Close"),
    ]

    def __init__(self, title: str, message: str, *, error: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.set_class(error, "error")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self.title_text, classes="dialog-title", id="message-title", markup=False)
            with VerticalScroll(classes="dialog-scroll"):
                yield Static(self.message, classes="dialog-body", id="message-body", markup=False)

    def action_close(self) -> None:
        self.dismiss(None)


class ErrorModal(MessageModal):
    """A BackendError as its backend wrote it."""

    def __init__(self, error: BackendError | Exception) -> None:
        if isinstance(error, BackendError):
            super().__init__(error.title, error.message, error=True)
        else:
            super().__init__("Unexpected error", f"{type(error).__name__}: {error}", error=True)
