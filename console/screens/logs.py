"""`l`: follow a deployment's logs until you leave the screen."""

from __future__ import annotations

import threading

from textual.app import ComposeResult
from textual.widgets import RichLog

from console.capabilities import Deployments
from console.messages import BackendFailed, LogLinesRead
from console.screens.base import ResourceScreen

TAIL = 200


class LogsScreen(ResourceScreen):
    """The active model container's log, streamed."""

    @property
    def deployments_of(self) -> Deployments:
        """The one capability this screen uses."""
        return self.mlops.services.deployments

    RESOURCE = "deploy"

    def __init__(self, name: str) -> None:
        super().__init__()
        self.deployment = name
        self._stop = threading.Event()

    def compose_body(self) -> ComposeResult:
        yield RichLog(id="log-view", max_lines=5000, wrap=False, markup=False, highlight=False)

    def body_mounted(self) -> None:
        self.set_pane_status(f"logs of {self.deployment} (following; esc: back)")
        self.load()

    def load(self) -> None:
        # A followed Docker log blocks until the next line, and a worker thread would hold the
        # app's exit until then: a daemon thread does not, and stops at its next line.
        threading.Thread(
            target=self._follow, args=(self.deployment,), name="mlops-logs", daemon=True
        ).start()

    def _follow(self, name: str) -> None:
        try:
            for line in self.deployments_of.deployment_logs(name, TAIL):
                if self._stop.is_set():
                    return
                self.post_message(LogLinesRead([line]))
        except Exception as exc:  # any failure is shown, never raised
            if not self._stop.is_set():
                self.post_message(BackendFailed("load", exc))

    def on_log_lines_read(self, message: LogLinesRead) -> None:
        log = self.query_one("#log-view", RichLog)
        for line in message.lines:
            log.write(line)

    def on_unmount(self) -> None:
        self._stop.set()
