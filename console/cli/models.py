"""`mlops models ...`: the model registry — list, register, promote through a gate, roll back.

mlflow is imported only inside the commands (through backends.registry), so `mlops --help`
stays instant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from console.cli.common import backend_errors, fail, print_json
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from backends.records import AliasEvent, GateResult
    from backends.registry import Registry

app = typer.Typer(
    help="The model registry: versions, aliases, promotion gate, rollback, alias history.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable keys).")]
AliasOpt = Annotated[
    str,
    typer.Option("--alias", "-a", help="The alias to move (and whose version the gate compares)."),
]
RequireOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--require",
        "-r",
        metavar="METRIC>=X",
        help="A bound on the version's run metric (>=, <=, >, <, ==); repeat for more.",
    ),
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why; kept in the alias history.")]


def _registry() -> Registry:
    from backends.registry import Registry
    from console.config import Settings

    return Registry(Settings.from_env().tracking_uri)


@app.command("list")
def list_models(as_json: JsonOpt = False) -> None:
    """List registered models with their aliases."""
    with backend_errors():
        models = _registry().list_models()
    if as_json:
        print_json(models)
        return
    _table(
        ["NAME", "LATEST", "ALIASES", "UPDATED"],
        [[m.name, _v(m.latest_version), _aliases(m.aliases), _when(m.updated)] for m in models],
        empty="no registered models",
    )


@app.command()
def versions(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    as_json: JsonOpt = False,
) -> None:
    """List the versions of a model: run, key metrics, aliases, tags, status, legacy stage."""
    with backend_errors():
        found = _registry().versions(name)
    if as_json:
        print_json(found)
        return
    _table(
        ["VERSION", "ALIASES", "STATUS", "STAGE", "RUN", "METRICS", "TAGS", "CREATED"],
        [
            [
                str(v.version),
                ",".join(v.aliases) or "-",
                v.status,
                v.stage or "-",
                v.run_id or "-",
                _pairs({k: f"{x:.4g}" for k, x in v.metrics.items()}, limit=3),
                _pairs(v.tags, limit=3),
                _when(v.created),
            ]
            for v in found
        ],
        empty=f"{name} has no versions",
    )


@app.command()
def register(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID", help="The run that logged the model.")],
    name: Annotated[str, typer.Option("--name", "-n", help="Registered model name.")],
    artifact: Annotated[
        str | None,
        typer.Option("--artifact", help="The logged model's name, if the run logged several."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Register the model a run logged as a new version of NAME."""
    with backend_errors():
        version = _registry().register(run_id, name, artifact=artifact)
    if as_json:
        print_json(version)
    else:
        typer.echo(f"registered {version.name} version {version.version} from run {run_id}")


@app.command()
def validate(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version to check.")],
    alias: AliasOpt = "champion",
    require: RequireOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the promotion gate without moving anything (exit 1 if a check fails)."""
    with backend_errors():
        result = _registry().validate(name, version, alias=alias, requirements=require or ())
    if as_json:
        print_json(result)
    else:
        _print_gate(result)
    if not result.passed:
        fail(_failed(result), ExitCode.CHECK_FAILED)


@app.command()
def promote(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    version: Annotated[int, typer.Argument(metavar="VERSION", help="The version to promote.")],
    alias: AliasOpt = "champion",
    require: RequireOpt = None,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Move ALIAS to VERSION after the gate passes: metrics, signature, load-and-predict."""

    def report(result: GateResult) -> None:
        if not as_json:
            _print_gate(result)
        elif not result.passed:
            print_json({"gate": result, "event": None})

    with backend_errors():
        gate, event = _registry().promote(
            name, version, alias=alias, requirements=require or (), reason=reason, report=report
        )
    if as_json:
        print_json({"gate": gate, "event": event})
    elif event is None:
        typer.echo(f"{alias} already points at version {version}; nothing moved")
    else:
        typer.echo(_moved(event))


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    alias: AliasOpt = "champion",
    to: Annotated[
        int | None, typer.Option("--to", help="Roll back to this version instead.")
    ] = None,
    reason: ReasonOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Move ALIAS back to the version it pointed to before the current one (from the history)."""
    with backend_errors():
        event = _registry().rollback(name, alias=alias, to=to, reason=reason)
    if as_json:
        print_json(event)
    elif event is None:
        typer.echo(f"{alias} already points at version {to}; nothing moved")
    else:
        typer.echo(_moved(event))


@app.command()
def history(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    alias: Annotated[
        str | None, typer.Option("--alias", "-a", help="Only this alias (default: every alias).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every move of every alias: when, who, from, to, action, reason (oldest first)."""
    with backend_errors():
        events = _registry().history(name, alias)
    if as_json:
        print_json(events)
        return
    _table(
        ["WHEN", "ALIAS", "ACTION", "FROM", "TO", "WHO", "REASON"],
        [
            [
                _when(e.at, seconds=True),
                e.alias,
                e.action if e.recorded else f"{e.action}*",
                _v(e.from_version),
                _v(e.to_version),
                e.who,
                e.reason,
            ]
            for e in events
        ],
        empty=f"no alias of {name} has moved yet",
    )
    if any(not e.recorded for e in events):
        typer.echo("* detected now, not yet recorded: the next promote or rollback records it")


# --------------------------------------------------------------------------- output helpers


def _print_gate(result: GateResult) -> None:
    typer.echo(f"gate for {result.model} version {result.version} ({result.alias}):")
    width = max((len(c.name) for c in result.checks), default=0)
    for check in result.checks:
        mark = "PASS" if check.passed else "FAIL"
        typer.echo(f"  {mark}  {check.name.ljust(width)}  {check.detail}")


def _failed(result: GateResult) -> str:
    failed = ", ".join(c.name for c in result.checks if not c.passed)
    return f"gate failed for {result.model} version {result.version}: {failed}"


def _moved(event: AliasEvent) -> str:
    return (
        f"{event.alias} of {event.model}: {_v(event.from_version)} -> {_v(event.to_version)} "
        f"({event.action} by {event.who})"
    )


def _table(headers: list[str], rows: Sequence[Sequence[str]], *, empty: str) -> None:
    if not rows:
        typer.echo(empty)
        return
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    for row in [headers, *rows]:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)


def _aliases(aliases: dict[str, int]) -> str:
    return " ".join(f"{a}={v}" for a, v in sorted(aliases.items())) or "-"


def _pairs(values: dict[str, str], *, limit: int) -> str:
    items = [f"{k}={v}" for k, v in sorted(values.items())]
    return " ".join(items[:limit]) + (" ..." if len(items) > limit else "") if items else "-"


def _when(at: datetime, *, seconds: bool = False) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + "Z"
