"""The Textual application shell. Screens arrive one per resource (see issue: the console)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Header, Static

from console import __version__
from console.config import Settings


class MlopsApp(App[None]):
    """mlops-console: runs, models, deployments and live monitoring in one terminal."""

    CSS_PATH = "app.tcss"
    TITLE = "mlops-console"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave the console"),
    ]

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__()
        self.settings = settings or Settings.from_env()

    def compose(self) -> ComposeResult:
        yield Header(show_clock=True)
        with Vertical(id="welcome"):
            yield Static(f"mlops-console {__version__}", id="banner")
            yield Static(self._backends_text(), id="backends")
        yield Footer()

    def on_mount(self) -> None:
        mode = " [read-only]" if self.settings.read_only else ""
        self.sub_title = f"context: {self.settings.context}{mode}"

    def _backends_text(self) -> str:
        s = self.settings
        return "\n".join(
            [
                f"MLflow tracking   {s.tracking_uri}",
                f"Docker engine     {s.docker_host or 'local socket'}",
                f"Metrics           {s.metrics_source}",
            ]
        )
