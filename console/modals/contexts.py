"""`:ctx`: the config file's contexts, the one in use marked; enter switches every pane to one."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from console.contexts import ContextConfig


class ContextPicker(ModalScreen[str | None]):
    """A table of context, tracking URI, Docker and read-only; dismisses with the chosen name."""

    BINDINGS = [
        Binding("escape,q", "cancel", "Cancel", id="contexts.cancel", tooltip="Stay here"),
    ]

    def __init__(self, config: ContextConfig, in_use: str) -> None:
        super().__init__()
        self.config = config
        self.in_use = in_use

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog help"):
            yield Static(f"Contexts ({self.config.path})", classes="dialog-title", markup=False)
            table: DataTable[str] = DataTable(id="contexts-table", cursor_type="row")
            table.add_columns("", "context", "tracking", "docker", "read-only")
            for name, ctx in sorted(self.config.contexts.items()):
                table.add_row(
                    "*" if name == self.in_use else "",
                    name,
                    ctx.settings.get("tracking_uri", "-"),
                    ctx.settings.get("docker_host", "-"),
                    "yes" if ctx.read_only else "no",
                    key=name,
                )
            yield table
            yield Static("enter switch   esc stay", classes="dialog-hint")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        names = sorted(self.config.contexts)
        if self.in_use in names:
            table.move_cursor(row=names.index(self.in_use))
        table.focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.dismiss(event.row_key.value)

    def action_cancel(self) -> None:
        self.dismiss(None)
