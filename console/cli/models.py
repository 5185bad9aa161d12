"""`mlops models ...`: the model registry — list, register, promote through a gate, roll back.

mlflow is imported only inside the commands (through backends.mlflow.registry), so `mlops --help`
stays instant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from backends.defaults import CHAMPION
from console import format as fmt
from console.cli.common import (
    JsonOpt,
    YesOpt,
    backend_errors,
    confirm,
    fail,
    print_json,
    refuse_if_read_only,
    table,
)
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from backends.mlflow.registry import Registry
from backends.records import AliasEvent, GateResult

app = typer.Typer(
    help="The model registry: versions, aliases, promotion gate, rollback, alias history.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

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
    from backends.mlflow.registry import Registry
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
    table(
        ["NAME", "LATEST", "ALIASES", "UPDATED"],
        [
            [m.name, fmt.version(m.latest_version), fmt.aliases(m.aliases), fmt.when_utc(m.updated)]
            for m in models
        ],
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
    table(
        ["VERSION", "ALIASES", "STATUS", "STAGE", "RUN", "METRICS", "TAGS", "CREATED"],
        [
            [
                str(v.version),
                ",".join(v.aliases) or "-",
                v.status,
                v.stage or "-",
                v.run_id or "-",
                fmt.pairs({k: f"{x:.4g}" for k, x in v.metrics.items()}, limit=3),
                fmt.pairs(v.tags, limit=3),
                fmt.when_utc(v.created),
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
    refuse_if_read_only("models register")
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
    alias: AliasOpt = CHAMPION,
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
    alias: AliasOpt = CHAMPION,
    require: RequireOpt = None,
    reason: ReasonOpt = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Move ALIAS to VERSION after the gate passes: metrics, signature, load-and-predict.

    The plan (from which version to which) is shown first; applying it refuses (exit 5) if
    someone moved the alias in between.
    """
    refuse_if_read_only("models promote")
    from console.plans import promote_summary

    with backend_errors():
        registry = _registry()
        plan = registry.plan_promote(name, version, alias=alias, requirements=require or ())
        if plan.moves:
            confirm(promote_summary(plan), yes=yes)
        gate, event = registry.apply_promote(plan, reason=reason, report=_reporter(as_json))
    if as_json:
        print_json({"gate": gate, "event": event})
    elif event is None:
        typer.echo(f"{alias} already points at version {version}; nothing moved")
    else:
        typer.echo(_moved(event))


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    alias: AliasOpt = CHAMPION,
    to: Annotated[
        int | None, typer.Option("--to", help="Roll back to this version instead.")
    ] = None,
    reason: ReasonOpt = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Move ALIAS back to the version it pointed to before the current one (from the history).

    The plan is shown first; applying it refuses (exit 5) if the alias moved in between.
    """
    refuse_if_read_only("models rollback")
    from console.plans import alias_rollback_summary

    with backend_errors():
        registry = _registry()
        plan = registry.plan_rollback(name, alias=alias, to=to)
        if plan.moves:
            confirm(alias_rollback_summary(plan), yes=yes)
        event = registry.apply_rollback(plan, reason=reason)
    if as_json:
        print_json(event)
    elif event is None:
        typer.echo(f"{alias} already points at version {to}; nothing moved")
    else:
        typer.echo(_moved(event))


@app.command()
def pending(
    name: Annotated[
        str | None, typer.Argument(metavar="[NAME]", help="Only this model (default: all).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Challengers waiting for a person's approval, with their trigger and gate report."""
    from console.plans import pending_lines

    with backend_errors():
        waiting = _registry().pending_approvals(name)
    if as_json:
        print_json(waiting)
        return
    if not waiting:
        typer.echo("no challenger waits for approval")
        return
    for p in waiting:
        champion = fmt.version(p.champion_version)
        typer.echo(
            f"{p.label} waits for approval (champion {champion}, since {fmt.when(p.created)})"
        )
        for line in pending_lines(p):
            typer.echo(f"  {line}")
        typer.echo(f"  approve: mlops models approve {p.model} {p.version}")


@app.command()
def approve(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Registered model name.")],
    version: Annotated[
        int, typer.Argument(metavar="VERSION", help="The challenger version to approve.")
    ],
    reason: ReasonOpt = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Approve the challenger VERSION: champion moves to it through the gate, and you are
    written into the history as the approver. Exit 5 if VERSION is not the challenger waiting
    (or champion or challenger moved since the plan), 1 if the gate fails."""
    refuse_if_read_only("models approve")
    from console.plans import approve_summary

    with backend_errors():
        registry = _registry()
        plan = registry.plan_approve(name, version)
        confirm(approve_summary(plan), yes=yes)
        gate, event = registry.apply_approve(plan, reason=reason, report=_reporter(as_json))
    if as_json:
        print_json({"gate": gate, "event": event})
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
        report = _registry().history_report(name, alias)
    if as_json:
        print_json({"events": report.events, "unreadable": report.unreadable})
        return
    events = report.events
    table(
        ["WHEN", "ALIAS", "ACTION", "FROM", "TO", "WHO", "REASON"],
        [
            [
                fmt.when_utc(e.at, seconds=True),
                e.alias,
                e.action if e.recorded else f"{e.action}*",
                fmt.version(e.from_version),
                fmt.version(e.to_version),
                e.who,
                e.reason,
            ]
            for e in events
        ],
        empty=f"no alias of {name} has moved yet",
    )
    if any(not e.recorded for e in events):
        typer.echo("* detected now, not yet recorded: the next promote or rollback records it")
    if report.unreadable:
        count = len(report.unreadable)
        typer.echo(
            f"{count} unreadable entr{'y' if count == 1 else 'ies'}: "
            + "; ".join(f"{u.key} ({u.why})" for u in report.unreadable[:10])
            + (" ..." if count > 10 else "")
        )


# --------------------------------------------------------------------------- output helpers


def _reporter(as_json: bool) -> Callable[[GateResult], None]:
    """What a move shows of its gate before anything moves: the checks, or in JSON only a
    failed gate (the outcome document carries a passed one)."""

    def report(result: GateResult) -> None:
        if not as_json:
            _print_gate(result)
        elif not result.passed:
            print_json({"gate": result, "event": None})

    return report


def _print_gate(result: GateResult) -> None:
    typer.echo(f"gate for {result.model} version {result.version} ({result.alias}):")
    width = max((len(c.name) for c in result.checks), default=0)
    for check in result.checks:
        mark = "PASS" if check.passed else "FAIL"
        typer.echo(f"  {mark}  {check.name.ljust(width)}  {check.detail}")
    if result.policy is not None:
        from backends.policy.report import render  # numpy and scipy: only when there is one

        typer.echo("")
        for line in render(result.policy).splitlines():
            typer.echo(f"  {line}".rstrip())


def _failed(result: GateResult) -> str:
    failed = ", ".join(c.name for c in result.checks if not c.passed)
    return f"gate failed for {result.model} version {result.version}: {failed}"


def _moved(event: AliasEvent) -> str:
    return (
        f"{event.alias} of {event.model}: {fmt.version(event.from_version)} -> "
        f"{fmt.version(event.to_version)} ({event.action} by {event.who})"
    )
