"""Exit codes shared by every `mlops` command (DESIGN.md, "CLI conventions")."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    CHECK_FAILED = 1  # a gate or check failed
    USAGE = 2
    UNREACHABLE = 3  # a backend could not be reached
    NOT_FOUND = 4
    CONFLICT = 5
