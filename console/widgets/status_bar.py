"""One line at the bottom: each backend as connected, or unreachable since when."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

if TYPE_CHECKING:
    from console.capabilities import BackendName


@dataclass(frozen=True)
class BackendStatus:
    """What the last probes of one backend found; ``down_since`` set while it is unreachable."""

    label: str
    reachable: bool | None = None  # None: not probed yet
    down_since: datetime | None = None
    error: str = ""

    def text(self, short: bool = False) -> str:
        """How the status bar says it (``short`` where the terminal is narrow)."""
        label = self.label.split(" ")[0]
        if self.reachable is None:
            return f"{label} …"
        if self.reachable:
            return label if short else f"{self.label} connected"
        since = self.down_since.strftime("%H:%M:%S") if self.down_since else "?"
        return f"{label} since {since}" if short else f"{label} unreachable since {since}"


class StatusBar(Static):
    """Renders the app's ``backend_status``; the app refreshes it when a probe changes it."""

    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $text-muted; }
    """

    def render(self) -> Text:
        statuses: dict[BackendName, BackendStatus] = getattr(self.app, "backend_status", {})
        text = self._line(statuses.values(), short=False)
        if text.cell_len > self.size.width > 0:  # 80 columns: the short form fits
            text = self._line(statuses.values(), short=True)
        return text

    @staticmethod
    def _line(statuses: Iterable[BackendStatus], short: bool) -> Text:
        text = Text(" ")
        for i, status in enumerate(statuses):
            if i:
                text.append("  " if short else "   ")
            up = status.reachable
            style = "" if up is None else ("green" if up else "bold red")
            mark = "●" if up else ("✗" if up is False else "○")
            text.append(f"{mark} {status.text(short)}", style=style)
        return text
