"""Who is acting: the name every change is recorded under (history, silences, approvals)."""

from __future__ import annotations

import getpass
import os

__all__ = ["current_user"]


def current_user() -> str:
    """``MLOPS_USER`` if set, else the OS user."""
    user = os.environ.get("MLOPS_USER", "").strip()
    if user:
        return user
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no passwd entry (some containers)
        return "unknown"
