"""Waiting in tests for a condition, not for a time: the guard only stops a hung test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def eventually(
    probe: Callable[[], T | None], what: str, timeout: float = 30, every: float = 0.25
) -> T:
    """Poll until ``probe`` returns something truthy; AssertionError with its last answer
    when it has not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
