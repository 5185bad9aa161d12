"""Waiting for a worker's answer to reach the screen."""

from __future__ import annotations

from collections.abc import Callable

from textual.pilot import Pilot

from tests.tui.fakes import screen_text


async def wait_until(
    pilot: Pilot[None], condition: Callable[[], bool], what: str, timeout: float = 5.0
) -> None:
    """Let the app run until ``condition`` holds (or fail saying ``what`` never happened)."""
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await pilot.pause(0.02)
    raise AssertionError(f"{what}: not seen within {timeout}s\n{screen_text(pilot.app)}")


async def wait_for_text(pilot: Pilot[None], text: str, timeout: float = 5.0) -> str:
    """Until ``text`` is on the current screen; returns the screen's text."""
    await wait_until(pilot, lambda: text in screen_text(pilot.app), repr(text), timeout)
    return screen_text(pilot.app)
