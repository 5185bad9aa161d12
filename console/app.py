"""The console: one mode per resource (runs, models, deploy, monitor, alerts), k9s-style keys."""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
from collections.abc import Callable
from datetime import datetime

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.screen import Screen

from backends.errors import BackendError
from console.capabilities import BACKENDS, BackendName
from console.commands import MlopsCommands
from console.config import Settings
from console.messages import BackendProbed, PendingApprovals
from console.services import Services
from console.widgets.status_bar import BackendStatus, StatusBar

HANGUP_EXIT = 129  # 128 + SIGHUP, as a shell reports a process its hang-up ended


def _screen(module: str, name: str) -> Screen[None]:
    """A new instance of ``console.screens.<module>.<name>``."""
    screen_class = getattr(importlib.import_module(f"console.screens.{module}"), name)
    screen: Screen[None] = screen_class()
    return screen


class MlopsApp(App[None]):
    """mlops-console: runs, models, deployments and live monitoring in one terminal."""

    CSS_PATH = "app.tcss"
    TITLE = "mlops-console"
    COMMANDS = App.COMMANDS | {MlopsCommands}
    # Screens are imported when first shown: the first paint pays for the runs screen only.
    MODES = {
        "runs": lambda: _screen("runs", "RunsScreen"),
        "models": lambda: _screen("models", "ModelsScreen"),
        "deploy": lambda: _screen("deployments", "DeploymentsScreen"),
        "monitor": lambda: _screen("monitor", "MonitorScreen"),
        "alerts": lambda: _screen("alerts", "AlertsScreen"),
    }
    BINDINGS = [
        Binding("q", "quit", "Quit", id="app.quit", tooltip="Leave the console"),
        Binding(
            "colon", "jump", "Jump", id="app.jump", tooltip=":runs :models :deploy :monitor :alerts"
        ),
        Binding("question_mark", "help", "Keys", id="app.help", tooltip="The keys of this screen"),
        Binding("escape", "back", "Back", id="app.back", tooltip="Back to the previous screen"),
    ]

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        services: Services | None = None,
        probe_interval: float = 15.0,
        probe_delay: float = 1.0,
        retry_base: float = 2.0,
        retry_max: float = 60.0,
        refresh_interval: float = 3.0,
        start_mode: str = "runs",
        show_clock: bool = True,
        approval_interval: float = 30.0,
        services_for: Callable[[Settings], Services] | None = None,
        pinned_read_only: bool = False,
    ) -> None:
        # The first screen is the app's default mode, built as the app composes (Textual reads
        # DEFAULT_MODE in __init__): reaching it with switch_mode instead holds every update back
        # 50 ms (Textual's delay_update, which masks a switch between two screens), and the
        # first paint with them; and a class-wide "runs" would build and load the runs screen
        # behind any other start mode.
        self.DEFAULT_MODE = start_mode  # type: ignore[misc]
        super().__init__()
        self.settings = settings or Settings.from_env()
        # How a context's services are made (`:ctx` makes them anew); tests give fakes.
        self.services_for = services_for or Services.real
        self.services: Services = services or self.services_for(self.settings)
        # `--read-only` on the command line holds in every context `:ctx` goes to.
        self.pinned_read_only = pinned_read_only
        self._switching = False
        self.probe_interval = probe_interval
        self.probe_delay = probe_delay
        self.retry_base = retry_base
        self.retry_max = retry_max
        self.refresh_interval = refresh_interval
        self.start_mode = start_mode
        self.show_clock = show_clock  # off for snapshot tests
        self.approval_interval = approval_interval
        self._announced: set[tuple[str, int]] = set()  # pending approvals already notified
        self.backend_status: dict[BackendName, BackendStatus] = self._fresh_status()

    def _fresh_status(self) -> dict[BackendName, BackendStatus]:
        metrics_label = "Prometheus" if self.settings.prometheus_url else "Metrics (direct scrape)"
        labels: dict[BackendName, str] = {
            "mlflow": "MLflow",
            "docker": "Docker",
            "metrics": metrics_label,
        }
        return {name: BackendStatus(labels[name]) for name in BACKENDS}

    def on_mount(self) -> None:
        self._apply_theme(self.settings.theme)
        self._show_context()
        self._watch_terminal()

    def _watch_terminal(self) -> None:
        """Leave when the terminal is gone. An SSH session that drops while the console runs
        under a wrapper (`make demo`, a script) may send no SIGHUP to this process, and
        Textual's input thread then reads the dead terminal's end-of-file in a loop (half a
        core, for ever); the terminal stops being one, which is what is watched."""
        if self.is_headless:
            return
        try:
            fd = sys.__stdin__.fileno() if sys.__stdin__ is not None else -1
        except (OSError, ValueError):
            return
        if fd < 0 or not os.isatty(fd):
            return

        def check() -> None:
            if not os.isatty(fd):
                # Restoring a terminal that is gone may itself hang on the dead device: a
                # second, unconditional way out after a grace period.
                threading.Timer(5.0, os._exit, args=(HANGUP_EXIT,)).start()
                self.exit(return_code=HANGUP_EXIT)

        self.set_interval(2.0, check, name="terminal watch")

    def _show_context(self) -> None:
        mode = " [read-only]" if self.settings.read_only else ""
        self.sub_title = f"context: {self.settings.context}{mode}"
        # Probes import mlflow and docker: start them once the first frame is out.
        # After the first screen's own data is asked for: a probe's import of the Docker SDK
        # would compete with it for the interpreter (10,000-run listing: 1.9 s → 1.3 s).
        if self.probe_delay > 0:
            self.set_timer(self.probe_delay, self._start_probes)
        else:
            self.call_after_refresh(self._start_probes)

    def _apply_theme(self, name: str | None) -> None:
        if not name:
            return
        if name not in self.available_themes:
            known = ", ".join(sorted(self.available_themes))
            self.notify(f"no theme {name!r}; themes: {known}", title="Theme", severity="error")
            return
        self.theme = name

    def _start_probes(self) -> None:
        for backend in BACKENDS:
            self._probe(backend)
        self._watch_approvals()

    # ------------------------------------------------------------------ approvals

    @work(exit_on_error=False, group="approvals")
    async def _watch_approvals(self) -> None:
        """Ask the registry now and then for challengers waiting for a person: wherever the
        operator is, a new one is announced once (a retraining an alert started ends here)."""
        while True:
            try:
                pending = await asyncio.to_thread(self.services.registry.pending_approvals)
            except Exception:  # MLflow down: the status bar says so; ask again later
                pass
            else:
                self.post_message(PendingApprovals(pending))
            await asyncio.sleep(self.approval_interval)

    def on_pending_approvals(self, message: PendingApprovals) -> None:
        fresh = [p for p in message.pending if (p.model, p.version) not in self._announced]
        self._announced.update((p.model, p.version) for p in fresh)
        if len(fresh) > 3:  # a registry full of them (the first look): one notice, not a wall
            names = ", ".join(p.label for p in fresh[:5]) + (" …" if len(fresh) > 5 else "")
            self.notify(
                f"{len(fresh)} challengers wait for approval: {names}. "
                "Approve them on :models with A.",
                title="Approval needed",
                timeout=30,
            )
            return
        for pending in fresh:
            why = pending.trigger.summary() if pending.trigger else "moved to challenger by hand"
            self.notify(
                f"{pending.label} waits for approval ({why}). Approve it on :models with A.",
                title="Approval needed",
                timeout=30,
            )

    # ------------------------------------------------------------------ backend probes

    @work(exit_on_error=False, group="probes")
    async def _probe(self, backend: BackendName) -> None:
        """Probe ``backend`` forever: slowly while it answers, with backoff while it does not."""
        delay = self.retry_base
        while True:
            try:
                await asyncio.to_thread(self.services.probes.probe, backend)
            except BackendError as exc:
                self.post_message(BackendProbed(backend, False, datetime.now(), exc.message))
            except Exception as exc:  # nothing a backend does may end the probing
                self.post_message(BackendProbed(backend, False, datetime.now(), repr(exc)))
            else:
                self.post_message(BackendProbed(backend, True, datetime.now()))
                delay = self.retry_base
                await asyncio.sleep(self.probe_interval)
                continue
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    def on_backend_probed(self, message: BackendProbed) -> None:
        old = self.backend_status[message.backend]  # type: ignore[index]
        if message.reachable:
            new = BackendStatus(old.label, True)
            if old.reachable is False:
                self.notify(f"{old.label} is reachable again", title="Recovered")
        else:
            new = BackendStatus(old.label, False, old.down_since or message.at, message.error)
        self.backend_status[message.backend] = new  # type: ignore[index]
        for screen in self.screen_stack:  # empty while the app shuts down
            for bar in screen.query(StatusBar):
                bar.refresh()

    # ------------------------------------------------------------------ navigation

    def action_jump(self) -> None:
        from console.modals.jump import JumpBar, context_request, resolve  # see MODES

        def jumped(text: str | None) -> None:
            if not text:
                return
            wanted = context_request(text)
            if wanted is not None:
                self.choose_context(wanted or None)
                return
            mode = resolve(text)
            if mode is None:
                self.notify(
                    f"no resource {text!r}: runs, models, deploy, monitor, alerts, ctx",
                    severity="error",
                )
            else:
                self.switch_mode(mode)

        self.push_screen(JumpBar(), jumped)

    # ------------------------------------------------------------------ contexts

    def choose_context(self, name: str | None) -> None:
        """`:ctx NAME` switches; `:ctx` alone lists the config file's contexts to pick from."""
        if self._switching:
            self.notify("a context switch is under way", title="Contexts", severity="warning")
            return
        if name:
            self._switching = True
            self.run_worker(self.switch_context(name), group="context")
            return
        from console.contexts import load_config
        from console.modals.contexts import ContextPicker

        try:
            config = load_config()
        except BackendError as exc:
            self.notify(exc.message, title=exc.title, severity="error", timeout=15)
            return
        if not config.contexts:
            self.notify(
                f"no contexts in {config.path}: `mlops context list` says how to add them",
                title="Contexts",
                severity="warning",
            )
            return

        def picked(choice: str | None) -> None:
            if choice:
                self.choose_context(choice)

        self.push_screen(ContextPicker(config, self.settings.context), picked)

    async def switch_context(self, name: str) -> None:
        """Put context ``name`` into the environment, make its services, and build every pane
        anew against them (each loads again, as on start); the probes start over."""
        try:
            await self._switch_to(name)
        except Exception as exc:  # a switch that breaks must not end the console
            self.notify(f"could not switch to {name}: {exc!r}", title="Contexts", severity="error")
        finally:
            self._switching = False

    async def _switch_to(self, name: str) -> None:
        try:
            settings = await asyncio.to_thread(self._load_context, name)
        except BackendError as exc:
            self.notify(exc.message, title=exc.title, severity="error", timeout=15)
            return
        services = self.services_for(settings)
        self.workers.cancel_group(self, "probes")
        self.workers.cancel_group(self, "approvals")
        self.settings, self.services = settings, services
        self.backend_status = self._fresh_status()
        self._announced.clear()
        mode = self.current_mode
        # The current mode cannot be removed: stand on a blank one while every pane goes.
        self.add_mode("_switching", Screen)
        await self.switch_mode("_switching")
        try:
            for each, factory in self.MODES.items():
                await self.remove_mode(each)
                self.add_mode(each, factory)
        finally:
            await self.switch_mode(mode)
            await self.remove_mode("_switching")
        self._apply_theme(settings.theme)
        self._show_context()
        self._start_probes()
        self.notify(f"context {settings.context}: {settings.tracking_uri}", title="Context")

    def _load_context(self, name: str) -> Settings:
        """The context put into the environment, once no worker holds MLflow's global URIs
        (they were lent from the variables the switch rewrites)."""
        from backends.mlflow.client import quiesced

        with quiesced():
            return Settings.load(context=name, read_only=self.pinned_read_only)

    def action_help(self) -> None:
        from console.modals.help import HelpModal

        keys = []
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if binding.show or key in ("colon", "question_mark", "escape"):
                keys.append((self.get_key_display(binding), binding.description, active.tooltip))
        self.push_screen(HelpModal(self.current_mode, keys))

    async def run_command(self, mode: str, action: str | None) -> None:
        """A palette command: go to ``mode``, then run ``action`` on its screen."""
        if self.current_mode != mode:
            await self.switch_mode(mode)
        if action is None:
            return
        from console.screens.base import ResourceScreen

        screen = self.screen
        if screen is not self.screen_stack[0]:
            # A screen opened from the list (compare, train, a run, logs) is on top: the
            # command is the list's, and running it there would act on what is hidden.
            self.notify(
                f"back to the {mode} list first (esc), then run it again",
                title="Not here",
                severity="warning",
            )
            return
        if isinstance(screen, ResourceScreen):
            await screen.wait_body()  # a fresh screen refuses actions until then
        await screen.run_action(action)
