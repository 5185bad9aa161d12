"""What every resource screen shares: the frame, read-only refusals, and retry with backoff."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from textual import events, on
from textual.app import ComposeResult
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Header, Input, Static

from backends.errors import BackendError, Unavailable
from console.messages import BackendFailed
from console.modals.message import ErrorModal
from console.widgets.context_bar import ContextBar
from console.widgets.status_bar import StatusBar

if TYPE_CHECKING:
    from console.app import MlopsApp


class ResourceScreen(Screen[None]):
    """A screen over one resource. Subclasses compose ``compose_body``, start in
    ``body_mounted`` and implement ``load``.

    The frame (header, context bar, pane status, backend status, keys) paints first and the body
    is mounted right after that frame: building and styling tables, plots and forms takes Textual
    50 to 150 ms here, and the first frame of the console must be out within 0.5 s of launch.

    ``MUTATING`` maps each action that changes something to a verb; in read-only mode those
    bindings are hidden and their keys refused with a notice.

    ``FILTER`` names what the `/` row filter matches (k9s: type to narrow the list, enter to go
    back to it, esc to clear); a screen that sets it binds `/` to ``filter`` and esc to
    ``clear_filter``, narrows its rows with ``matches`` and redraws them in ``filter_changed``.
    """

    MUTATING: ClassVar[dict[str, str]] = {}
    RESOURCE: ClassVar[str] = ""
    FILTER: ClassVar[str] = ""  # e.g. "model names"; empty: the screen has no row filter
    FILTER_TARGET: ClassVar[str] = ""  # the widget enter returns to, e.g. "#models-table"
    # Textual's auto-focus would pick the frame's row filter before its styles hide it; the first
    # focusable widget of the body is focused once the body is mounted instead.
    AUTO_FOCUS = ""

    def __init__(self) -> None:
        super().__init__()
        self._retry_delay = 0.0
        self._down_since: datetime | None = None
        self.body_ready = False  # the body is mounted after the first frame
        # The app's one stylesheet (app.tcss) is parsed and current: without this, Textual
        # re-parses all of it and restyles the app twice for every new mode screen (its count
        # starts at -1), ~40 ms of the first paint here. A theme change still restyles us.
        self._css_update_count = self.app._css_update_count
        self._body_mounted = asyncio.Event()
        self.row_filter = ""
        self._listed = False  # a load succeeded once (see loaded)

    @property
    def mlops(self) -> MlopsApp:
        """The app, typed."""
        from console.app import MlopsApp

        assert isinstance(self.app, MlopsApp)
        return self.app

    def compose(self) -> ComposeResult:
        settings = self.mlops.settings
        yield Header(show_clock=self.mlops.show_clock)
        yield ContextBar(settings.context, settings.read_only)
        yield Static("", id="pane-status", classes="pane-status", markup=False)
        if self.FILTER:
            yield Input(
                id="row-filter",
                classes="row-filter hidden",
                placeholder=f"filter: part of {self.FILTER} (enter: to the list, esc: clear)",
            )
        yield StatusBar()
        yield Footer()

    def compose_body(self) -> ComposeResult:
        """The widgets between the pane status and the backend status bar."""
        yield from ()

    def on_mount(self) -> None:
        self.set_pane_status("loading…")
        self.call_after_refresh(self._mount_body)

    async def _mount_body(self) -> None:
        await self.mount_compose(self.compose_body(), before=self.query_one(StatusBar))
        if not self.is_attached:
            return  # closed (esc) while its body was being mounted
        self.body_ready = True
        if self.focused is None:  # see AUTO_FOCUS
            self.focus_next()
        self.refresh_bindings()  # the screen's keys were disabled until now (check_action)
        self._body_mounted.set()
        self.body_mounted()

    async def wait_body(self) -> None:
        """Until the body is mounted (the screen's actions are refused before that)."""
        await self._body_mounted.wait()

    def body_mounted(self) -> None:
        """The body is on the screen: show what is loading and start loading it."""

    def load(self) -> None:
        """(Re)load the screen's data in a worker."""

    # ------------------------------------------------------------------ row filter

    def action_filter(self) -> None:
        if not self.FILTER:
            return  # a screen without a row filter (compare, a run's details, logs)
        prompt = self.query_one("#row-filter", Input)
        prompt.remove_class("hidden")
        # Now, not with focus()'s call_later: keys typed right after `/` are already queued
        # behind this one and go to whatever has the focus when they are handled.
        self.set_focus(prompt)

    @on(Input.Changed, "#row-filter")
    def _row_filter_changed(self, event: Input.Changed) -> None:
        self.row_filter = event.value.strip()
        # Only over rows that were listed and still stand: not over "loading…" or "unreachable
        # since …", which the next good load replaces (filtered) anyway.
        if self.body_ready and self._listed and self._down_since is None:
            self.filter_changed()

    @on(Input.Submitted, "#row-filter")
    def _row_filter_submitted(self, event: Input.Submitted) -> None:
        if not self.row_filter:
            event.input.add_class("hidden")
        if self.FILTER_TARGET and self.body_ready:
            self.set_focus(self.query_one(self.FILTER_TARGET))  # at once, as in action_filter

    async def action_clear_filter(self) -> None:
        """Esc: clear the row filter when there is one, else go back."""
        if not self.FILTER:
            await self.app.action_back()
            return
        prompt = self.query_one("#row-filter", Input)
        if prompt.has_class("hidden") and not self.row_filter:
            await self.app.action_back()
            return
        prompt.add_class("hidden")
        prompt.value = ""  # Input.Changed clears the filter and redraws
        if self.FILTER_TARGET and self.body_ready:
            self.set_focus(self.query_one(self.FILTER_TARGET))  # at once, as in action_filter

    def matches(self, *fields: str | None) -> bool:
        """Whether a row with these cells passes the row filter (a case-blind substring)."""
        needle = self.row_filter.lower()
        return not needle or any(needle in field.lower() for field in fields if field)

    def filtered(self, shown: int, total: int, noun: str) -> str:
        """The count line: "3 deployments", or "1 of 3 deployments · filter: prod" while a
        filter is set (``noun`` is singular: "deployment")."""
        counted = f"{total} {noun}{'' if total == 1 else 's'}"
        if not self.row_filter:
            return counted
        return f"{shown} of {counted} · filter: {self.row_filter}"

    def filter_changed(self) -> None:
        """Redraw the rows with the new ``row_filter``."""

    # ------------------------------------------------------------------ read-only

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.body_ready:
            return None  # shown, but a key pressed before the body exists does nothing
        return not (action in self.MUTATING and self.mlops.settings.read_only)

    def refuse_if_read_only(self, action: str) -> bool:
        """Notify and return True when ``action`` changes something and we are read-only."""
        if action in self.MUTATING and self.mlops.settings.read_only:
            self.notify(
                f"read-only mode: {self.MUTATING[action]} is disabled",
                title="Refused",
                severity="warning",
            )
            return True
        return False

    def on_key(self, event: events.Key) -> None:
        # A hidden binding does not fire: its key reaches here, and is refused out loud.
        if not self.mlops.settings.read_only:
            return
        for binding in self._bindings.key_to_bindings.get(event.key, []):
            if binding.action in self.MUTATING:
                event.stop()
                self.refuse_if_read_only(binding.action)
                return

    # ------------------------------------------------------------------ failures

    def set_pane_status(self, text: str, *, error: bool = False) -> None:
        """The one line under the context bar: what the pane shows, or why it cannot."""
        status = self.query_one("#pane-status", Static)
        status.update(text)
        status.set_class(error, "error")

    def loaded(self) -> None:
        """A load succeeded: forget the backoff."""
        self._listed = True
        self._retry_delay = 0.0
        self._down_since = None

    def on_backend_failed(self, message: BackendFailed) -> None:
        message.stop()
        if message.what != "load":
            self.app.push_screen(ErrorModal(message.error))
            return
        error = message.error
        if not isinstance(error, BackendError):  # BackendFailed converts: this never happens
            error = BackendError(str(error))
        self.load_failed(error)

    def load_failed(self, error: BackendError) -> None:
        """Show why loading failed; retry by itself with backoff."""
        app = self.mlops
        if isinstance(error, Unavailable):
            self._down_since = self._down_since or datetime.now()
            self._retry_delay = min(max(self._retry_delay * 2, app.retry_base), app.retry_max)
            since = self._down_since.strftime("%H:%M:%S")
            heading = error.title if "unreachable" in error.title.lower() else f"{error.title}:"
            self.set_pane_status(
                f"{heading} since {since} — retrying in {self._retry_delay:g}s ({error.message})",
                error=True,
            )
            self.set_timer(self._retry_delay, self.load)
        else:
            self.set_pane_status(f"{error.title}: {error.message}", error=True)


class PollingScreen(ResourceScreen):
    """A pane that refreshes itself: the next refresh is scheduled when the last one finished,
    and nothing runs while the screen is hidden (it reloads once when shown again)."""

    def __init__(self) -> None:
        super().__init__()
        self._timer: Timer | None = None
        self._paused = False

    def on_screen_suspend(self) -> None:
        self._paused = True
        self.stop_refresh()

    def on_screen_resume(self) -> None:
        if self._paused:
            self._paused = False
            if self.body_ready:  # else body_mounted starts the polling
                self.load()

    def action_reload(self) -> None:
        self.load()

    def schedule_refresh(self, delay: float) -> None:
        """Refresh again in ``delay`` seconds (one timer at a time; none while hidden)."""
        self.stop_refresh()
        if not self._paused:
            self._timer = self.set_timer(delay, self.load)

    def stop_refresh(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def load_failed(self, error: BackendError) -> None:
        self.stop_refresh()  # the base class retries with backoff instead
        super().load_failed(error)
