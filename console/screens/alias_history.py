"""`h`: every move of every alias of one model, oldest first."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.widgets import DataTable

from console import format as fmt
from console.capabilities import Registry
from console.messages import AliasHistoryLoaded, BackendFailed
from console.screens.base import ResourceScreen
from console.widgets.tables import Table


class AliasHistoryScreen(ResourceScreen):
    """When, who, which alias, from → to, how and why."""

    @property
    def registry(self) -> Registry:
        """The one capability this screen uses."""
        return self.mlops.services.registry

    RESOURCE = "models"

    def __init__(self, model: str) -> None:
        super().__init__()
        self.model = model

    def compose_body(self) -> ComposeResult:
        yield Table(id="history-table", cursor_type="row", zebra_stripes=True)

    def body_mounted(self) -> None:
        self.set_pane_status(f"alias history of {self.model}: loading…")
        self.load()

    def load(self) -> None:
        self._load(self.model)

    @work(thread=True, exclusive=True, exit_on_error=False, group="history")
    def _load(self, model: str) -> None:
        try:
            events = self.registry.history(model)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed("load", exc))
        else:
            self.post_message(AliasHistoryLoaded(model, events))

    def on_alias_history_loaded(self, message: AliasHistoryLoaded) -> None:
        self.loaded()
        table = self.query_one("#history-table", DataTable)
        table.clear(columns=True)
        table.add_columns("when", "alias", "from", "to", "action", "who", "reason")
        for e in message.events:
            table.add_row(
                fmt.when(e.at),
                e.alias,
                f"v{e.from_version}" if e.from_version is not None else "-",
                f"v{e.to_version}" if e.to_version is not None else "-",
                e.action + ("" if e.recorded else " (unrecorded)"),
                e.who,
                e.reason or "",
            )
        self.set_pane_status(
            f"alias history of {self.model}: {len(message.events)} moves (esc: back)"
        )
