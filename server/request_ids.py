"""Request ids: every prediction answer names the request it answers, so a label that comes back
later (``POST /feedback``), a log line and a trace can all be joined on it.

The client's own ``X-Request-Id`` is kept when it is one we can carry safely — 1 to 200 visible
ASCII characters, Heroku's rule — and replaced by a generated one otherwise (as Heroku's router
does: a tracing header is no reason to refuse a prediction). The answer's ``X-Request-Id`` (and
``request_id`` in a ``/predict`` body) says which one counts.
"""

from __future__ import annotations

import re
import uuid

__all__ = ["HEADER", "request_id"]

HEADER = "x-request-id"
_CARRIED = re.compile(r"[!-~]{1,200}")


def request_id(given: str | None) -> str:
    """The client's id (the header's value) when it is carriable, else a fresh one (32 hex
    digits)."""
    if given is not None and _CARRIED.fullmatch(given):
        return given
    return uuid.uuid4().hex
