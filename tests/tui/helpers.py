"""Waiting for a worker's answer to reach the screen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from textual.message import Message
from textual.pilot import Pilot

from tests.tui.fakes import screen_text


async def wait_until(
    pilot: Pilot[None], condition: Callable[[], bool], what: str, timeout: float = 30.0
) -> None:
    """Let the app run until ``condition`` holds (or fail saying ``what`` never happened).

    ``timeout`` only stops a hung test: a loaded machine takes longer, and is waited for.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.02)
    if condition():
        return
    raise AssertionError(f"{what}: not seen within {timeout}s\n{screen_text(pilot.app)}")


async def wait_for_text(pilot: Pilot[None], text: str, timeout: float = 30.0) -> str:
    """Until ``text`` is on the current screen; returns the screen's text."""
    await wait_until(pilot, lambda: text in screen_text(pilot.app), repr(text), timeout)
    return screen_text(pilot.app)


M = TypeVar("M", bound=Message)


class Posted:
    """Every message the app processes (pass it as ``run_test(message_hook=posted)``): tests
    assert on what a screen posted — a plan, a move, a failure — not on the pixels it drew."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def __call__(self, message: Message) -> None:
        self.messages.append(message)

    def of(self, kind: type[M]) -> list[M]:
        return [m for m in self.messages if isinstance(m, kind)]


async def wait_for_message(
    pilot: Pilot[None],
    posted: Posted,
    kind: type[M],
    where: Callable[[M], bool] = lambda _: True,
    timeout: float = 30.0,
) -> M:
    """Until a ``kind`` message (matching ``where``) was posted; returns the first such."""

    def found() -> bool:
        return any(where(m) for m in posted.of(kind))

    await wait_until(pilot, found, f"a {kind.__name__} message", timeout)
    return next(m for m in posted.of(kind) if where(m))
