"""What every `mlops` command shares: backend errors → exit codes, the --json and --yes
options, JSON and table output, and the question asked before a plan is applied."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from enum import Enum
from typing import Annotated, Any, NoReturn

import typer

from backends.errors import BackendError, Conflict, GateFailed, InvalidInput, NotFound, Unavailable
from console.cli.exit_codes import ExitCode

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable keys).")]
YesOpt = Annotated[
    bool,
    typer.Option(
        "--yes",
        "-y",
        help="Apply the plan without asking (asked only when stdin is a terminal).",
    ),
]

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


def confirm(plan: str, *, yes: bool, question: str = "Apply this plan?") -> None:
    """Show what a plan will change (stderr), then ask, when stdin is a terminal and ``--yes``
    was not given. A "no" changes nothing and exits 1."""
    typer.echo(plan, err=True)
    if yes or not sys.stdin.isatty():
        return
    if not typer.confirm(question, default=False, err=True):
        fail("not confirmed; nothing changed", ExitCode.CHECK_FAILED)


def warn(text: str) -> None:
    """A one-line warning on stderr (nothing when empty)."""
    if text:
        typer.echo(f"warning: {text}", err=True)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    """A plain aligned table on stdout, or ``empty`` when there are no rows."""
    if not rows:
        typer.echo(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


READ_ONLY_ENV = "MLOPS_READ_ONLY"
_read_only = False  # `mlops --read-only ...` sets it for the command that runs


def set_read_only(on: bool) -> None:
    global _read_only
    _read_only = on


def read_only() -> bool:
    """``--read-only`` or MLOPS_READ_ONLY=1 (the setting the console reads too)."""
    return _read_only or os.environ.get(READ_ONLY_ENV, "").lower() in ("1", "true", "yes")


def refuse_if_read_only(verb: str) -> None:
    """Exit 2 with one line, before anything is contacted, when read-only."""
    if read_only():
        fail(f"read-only: `mlops {verb}` changes something and is refused", ExitCode.USAGE)
