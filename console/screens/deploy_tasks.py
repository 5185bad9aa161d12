"""The Deployments screen's running changes: one at a time per deployment, each in a worker,
its latest log line shown under the table, its failure in the error modal."""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message
from textual.widgets import Static

from console.messages import BackendFailed, DeployProgressed, DeployTaskEnded
from console.screens.base import PollingScreen

LogLine = Callable[[str], None]


class TaskRunner(PollingScreen):
    """Builds, deploys, rollbacks and take-downs in flight (the Deployments screen's)."""

    def __init__(self) -> None:
        super().__init__()
        self.tasks: dict[str, str] = {}  # running build/deploy/rollback → its latest line
        self.changing: set[str] = set()  # deployments with a deploy/rollback/take-down running

    # ------------------------------------------------------------------ running tasks

    def _claim(self, name: str) -> bool:
        """One change at a time per deployment: two switches of one router would each remove
        the container the other just started."""
        if name in self.changing:
            self.notify(
                f"a change to {name} is still running: wait for it to finish",
                title="Busy",
                severity="warning",
            )
            return False
        self.changing.add(name)
        return True

    def _run_task(
        self, task: str, what: str, run: Callable[[LogLine], Message], claimed: str = ""
    ) -> None:
        """In a worker: ``run`` with its log lines shown under the table; post what it returns,
        or its failure for the error modal; then release the ``claimed`` deployment."""

        def progressed(line: str) -> None:
            if line.strip() and not line.startswith((" --->", "Removing intermediate")):
                self.post_message(DeployProgressed(task, line.strip()))

        self.post_message(DeployProgressed(task, ""))
        try:
            result = run(progressed)
        except Exception as exc:  # any failure is shown, never raised
            self.post_message(BackendFailed(what, exc))
        else:
            self.post_message(result)
        finally:
            self.post_message(DeployTaskEnded(task, claimed))

    def on_deploy_progressed(self, message: DeployProgressed) -> None:
        self.tasks[message.task] = message.line
        self._show_tasks()

    def on_deploy_task_ended(self, message: DeployTaskEnded) -> None:
        self.tasks.pop(message.task, None)
        self.changing.discard(message.claimed)
        self._show_tasks()

    def _show_tasks(self) -> None:
        lines = [f"{task}… {line}".rstrip() for task, line in self.tasks.items()]
        panel = self.query_one("#deploy-tasks", Static)
        panel.update("\n".join(lines))
        panel.set_class(bool(lines), "running")
