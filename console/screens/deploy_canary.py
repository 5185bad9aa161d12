"""The Deployments screen's canary releases: the selected deployment's release under the table
(weight, step, failures, each check's last verdict, a countdown to the next evaluation), and a
person's part in it — resume, abort, promote — each confirmed, then carried out in a worker by
the release's own analysis worker (backends.lifecycle.canary)."""

from __future__ import annotations

from textual import events, on, work
from textual.message import Message
from textual.timer import Timer
from textual.widgets import DataTable, Static

from backends.records import CanaryRelease, Deployment
from console.capabilities import Canaries, CanaryCommand
from console.messages import CanariesLoaded, CanaryDecided
from console.modals.confirm import ConfirmModal
from console.plans import canary_decided, canary_summary
from console.screens.deploy_tasks import LogLine, TaskRunner
from console.widgets import canary as canary_text

COMMANDS: dict[str, CanaryCommand] = {
    "canary_resume": "resume",
    "canary_abort": "abort",
    "canary_promote": "promote",
}
DOING = {"resume": "resuming", "abort": "aborting", "promote": "promoting"}


class CanaryReleases(TaskRunner):
    """Canary releases for DeploymentsScreen (which provides ``_under_cursor``)."""

    def __init__(self) -> None:
        super().__init__()
        self.releases: dict[str, CanaryRelease] = {}  # by deployment
        self.canaries_error = ""
        self._countdown: Timer | None = None
        self._canary_shown = ""  # the panel's text now
        self._canary_offered: tuple[str, str] | None = None  # whose canary keys the footer has

    @property
    def canaries(self) -> Canaries:
        """The capability the canary part of this screen uses."""
        return self.mlops.services.canaries

    def _under_cursor(self) -> Deployment | None:
        """The deployment under the cursor (DeploymentsScreen)."""
        return None

    def release_of(self, name: str) -> CanaryRelease | None:
        """Deployment ``name``'s release worth showing (running, paused, finished lately)."""
        release = self.releases.get(name)
        return release if canary_text.shown(release) else None

    def _active_release(self) -> CanaryRelease | None:
        d = self._under_cursor()
        release = self.releases.get(d.name) if d is not None else None
        return release if release is not None and not release.finished else None

    # ------------------------------------------------------------------ reading

    def _read_canaries(self) -> None:
        """In the load worker: every release on record (a failure is said under the table)."""
        try:
            releases = self.canaries.canary_releases()
        except Exception as exc:  # shown, never raised: the deployments still list
            self.post_message(CanariesLoaded([], error=str(exc) or type(exc).__name__))
        else:
            self.post_message(CanariesLoaded(releases))

    def on_canaries_loaded(self, message: CanariesLoaded) -> None:
        self.canaries_error = message.error
        if not message.error:
            self.releases = {r.deployment: r for r in message.releases}
        self._show_canary()

    def start_countdown(self) -> None:
        """Tick the countdown from the loaded value, once a second, while shown."""
        if self._countdown is None:
            self._countdown = self.set_interval(1.0, self._show_canary, name="canary countdown")
        else:
            self._countdown.resume()

    def on_screen_suspend(self) -> None:
        if self._countdown is not None:
            self._countdown.pause()

    def on_screen_resume(self) -> None:
        if self._countdown is not None:
            self._countdown.resume()

    @on(DataTable.RowHighlighted, "#deploy-table")
    def _canary_follows_cursor(self) -> None:
        self._show_canary()

    def _show_canary(self) -> None:
        if not self.body_ready:
            return
        d = self._under_cursor()
        release = self.release_of(d.name) if d is not None else None
        lines = [canary_text.panel(release)] if release is not None else []
        if self.canaries_error:
            lines.append(f"canary releases could not be read: {self.canaries_error}")
        text = "\n".join(lines)
        if text != self._canary_shown:
            self._canary_shown = text
            panel = self.query_one("#deploy-canary", Static)
            panel.update(text)
            panel.set_class(bool(lines), "shown")
        active = self._active_release()
        offered = (active.deployment, active.status) if active is not None else None
        if offered != self._canary_offered:  # the footer is rebuilt only when its keys change
            self._canary_offered = offered
            self.refresh_bindings()

    # ------------------------------------------------------------------ keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if action not in COMMANDS or not allowed:
            return allowed
        release = self._active_release()
        if release is None:
            return False
        return release.status == "paused" if action == "canary_resume" else True

    def on_key(self, event: events.Key) -> None:
        # A canary key whose binding is hidden (no release runs there): say why nothing happens.
        # Read-only refusals are the base class's (its on_key runs too).
        if self.mlops.settings.read_only or not self.body_ready:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, []):
            if binding.action in COMMANDS and not self.check_action(binding.action, ()):
                event.stop()
                self._refuse_canary(COMMANDS[binding.action])
                return

    def _refuse_canary(self, command: CanaryCommand) -> None:
        d = self._under_cursor()
        release = self._active_release()
        if d is None:
            text = "no deployment selected"
        elif release is None:
            text = f"{d.name} has no canary release running"
        else:
            text = f"the canary of {d.name} is {release.status}, not paused: nothing to resume"
        self.notify(text, title=f"Canary {command}", severity="warning")

    def action_canary_resume(self) -> None:
        self._ask_canary("canary_resume")

    def action_canary_abort(self) -> None:
        self._ask_canary("canary_abort")

    def action_canary_promote(self) -> None:
        self._ask_canary("canary_promote")

    def _ask_canary(self, action: str) -> None:
        if self.refuse_if_read_only(action):
            return
        command = COMMANDS[action]
        release = self._active_release()
        if release is None or not self.check_action(action, ()):
            self._refuse_canary(command)
            return
        name = release.deployment

        def confirmed(yes: bool | None) -> None:
            if yes and self._claim(name):
                self._decide(name, command)

        self.app.push_screen(
            ConfirmModal(
                f"{command.capitalize()} the canary of {name}?",
                canary_summary(release, command),
                confirm_label=command.capitalize(),
            ),
            confirmed,
        )

    @work(thread=True, exit_on_error=False, group="deploy-moves")
    def _decide(self, name: str, command: CanaryCommand) -> None:
        def decide(_: LogLine) -> Message:
            return CanaryDecided(self.canaries.decide_canary(name, command), command)

        self._run_task(f"{DOING[command]} the canary of {name}", f"canary {command}", decide, name)

    def on_canary_decided(self, message: CanaryDecided) -> None:
        release = message.release
        self.releases[release.deployment] = release
        self.notify(
            canary_decided(release, message.command),
            title="Canary",
            severity="warning" if release.problem else "information",
        )
        self._show_canary()
        self.load()
