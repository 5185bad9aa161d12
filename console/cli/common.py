"""Helpers every `mlops` command shares: backend errors → exit codes, JSON output."""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Any, NoReturn

import typer

from backends.errors import BackendError, Conflict, GateFailed, InvalidInput, NotFound, Unavailable
from console.cli.exit_codes import ExitCode

_EXIT_FOR: list[tuple[type[BackendError], ExitCode]] = [
    (Unavailable, ExitCode.UNREACHABLE),
    (NotFound, ExitCode.NOT_FOUND),
    (Conflict, ExitCode.CONFLICT),
    (InvalidInput, ExitCode.USAGE),
    (GateFailed, ExitCode.CHECK_FAILED),
]


def exit_code_for(error: BackendError) -> ExitCode:
    """The documented exit code for a backend error (1 for anything unclassified)."""
    for kind, code in _EXIT_FOR:
        if isinstance(error, kind):
            return code
    return ExitCode.CHECK_FAILED


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print one line to stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(int(code))


@contextmanager
def backend_errors() -> Iterator[None]:
    """Turn a BackendError into its one-line message and exit code."""
    try:
        yield
    except BackendError as exc:
        fail(f"{exc.title}: {exc.message}", exit_code_for(exc))


def to_jsonable(value: Any) -> Any:
    """Records (frozen dataclasses) and their fields as plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def print_json(value: Any) -> None:
    """Stable, machine-readable output: sorted keys, one document."""
    json.dump(to_jsonable(value), sys.stdout, indent=2, sort_keys=True, default=str)
    sys.stdout.write("\n")
