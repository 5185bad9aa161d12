"""One error hierarchy for every backend, with a human title and message the UI can show."""

from __future__ import annotations

__all__ = ["BackendError", "Conflict", "GateFailed", "InvalidInput", "NotFound", "Unavailable"]


class BackendError(Exception):
    """A backend failed; ``title`` is a short heading, ``message`` says what happened."""

    title: str = "Backend error"

    def __init__(self, message: str, *, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title

    def __str__(self) -> str:
        return self.message


class Unavailable(BackendError):
    """The service could not be reached (down, refused, timed out)."""

    title = "Unreachable"


class NotFound(BackendError):
    """The named thing does not exist."""

    title = "Not found"


class Conflict(BackendError):
    """The request clashes with the current state (someone else changed it first)."""

    title = "Conflict"


class InvalidInput(BackendError):
    """The caller's input was rejected (bad filter syntax, bad reference...)."""

    title = "Invalid input"


class GateFailed(BackendError):
    """A check or promotion gate did not pass; nothing was changed."""

    title = "Gate failed"
