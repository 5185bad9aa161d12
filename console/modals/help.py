"""`?`: the keys the current screen answers to, with what each does."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static


class HelpModal(ModalScreen[None]):
    """A table of key, action and tooltip."""

    BINDINGS = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close", tooltip="Close"),
    ]

    def __init__(self, title: str, keys: list[tuple[str, str, str]]) -> None:
        super().__init__()
        self.title_text = title
        self.keys = keys

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Static(f"Keys: {self.title_text}", classes="dialog-title", markup=False)
            table: DataTable[str] = DataTable(id="help-table", cursor_type="row")
            table.add_columns("key", "does", "")
            for key, description, tooltip in self.keys:
                table.add_row(key, description, tooltip)
            yield table
            yield Static(
                ": jump (:runs :models :deploy :monitor :alerts), :ctx contexts   "
                "ctrl+p commands   esc back",
                classes="dialog-hint",
            )

    def action_close(self) -> None:
        self.dismiss(None)
