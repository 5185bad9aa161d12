"""`mlops alerts`: alert groups and silences in Alertmanager (or Prometheus' alerts, read-only).

``list`` shows every group with its state (active, silenced, inhibited: by which silence,
until when); ``ack`` acknowledges a group (a short silence on exactly its labels, in your name);
``silence`` posts a silence after showing how many alerts its matchers match now; ``expire``
ends one. Without ALERTMANAGER_URL the list is Prometheus' own alerts and the changes exit 2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

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
    to_jsonable,
)
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from backends.records.alerts import SilencePlan
    from console.services.alerts import AlertingAlerts

app = typer.Typer(
    help="Alert groups and silences (Alertmanager; Prometheus' alerts, read-only, without one).",
    no_args_is_help=True,
)

ForOpt = Annotated[str, typer.Option("--for", help="How long: 90s, 15m, 2h, 1d (at most 30d).")]


def _alerts() -> AlertingAlerts:
    from console.config import Settings
    from console.services.alerts import AlertingAlerts
    from console.services.session import Session

    return AlertingAlerts(Session(Settings.from_env()))


def _minutes(text: str) -> float:
    from backends.prometheus.queries import duration_seconds

    with backend_errors():
        seconds = duration_seconds(text.strip())
    if seconds <= 0:
        fail(f"--for {text!r} must be longer than 0", ExitCode.USAGE)
    return seconds / 60


@app.command("list")
def list_alerts(
    silences: Annotated[
        bool, typer.Option("--silences", help="List the silences instead of the groups.")
    ] = False,
    expired: Annotated[
        bool, typer.Option("--expired", help="With --silences: the expired ones too.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Alert groups: state, alerts, why a quiet one is quiet, runbook; or the silences."""
    from console.alerts_text import extra_labels, quiet_reason, silence_matchers

    with backend_errors():
        view = _alerts().alerts()
    shown = [s for s in view.silences if expired or s.state != "expired"]
    if as_json:
        print_json(
            {
                "source": view.source,
                "read_only": view.read_only,
                "taken_at": view.taken_at,
                "groups": [
                    {
                        "id": g.id,
                        "labels": g.labels,
                        "receiver": g.receiver,
                        "state": g.state,
                        "alerts": [
                            {**to_jsonable(a), "quiet": quiet_reason(a, view)} for a in g.alerts
                        ],
                    }
                    for g in view.groups
                ],
                "silences": shown,
            }
        )
        return
    typer.echo(f"source: {view.source}")
    if silences:
        table(
            ["SILENCE", "STATE", "MATCHERS", "BY", "FROM", "UNTIL", "COMMENT"],
            [
                [
                    s.short_id,
                    s.state,
                    silence_matchers(s),
                    s.created_by,
                    fmt.when(s.starts_at),
                    fmt.when(s.ends_at),
                    s.comment[:60],
                ]
                for s in shown
            ],
            empty="no silences" + ("" if expired else " (--expired shows ended ones)"),
        )
        return
    rows = []
    for g in view.groups:
        for a in g.alerts:
            note = quiet_reason(a, view) or a.summary
            rows.append(
                [
                    g.id,
                    g.state if a is g.alerts[0] else "",
                    a.severity or "-",
                    a.name,
                    fmt.since(a.starts_at),
                    fmt.pairs({**g.labels, **extra_labels(a, g)}, limit=5),
                    note[:90],
                    a.runbook_url or "-",
                ]
            )
    table(
        ["GROUP", "STATE", "SEVERITY", "ALERT", "FOR", "LABELS", "NOTE", "RUNBOOK"],
        rows,
        empty="no alerts",
    )


@app.command("ack")
def acknowledge(
    group: Annotated[str, typer.Argument(help="The group's id (or its start), from `list`.")],
    duration: ForOpt = "15m",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Acknowledge a group: silence exactly its labels for a while, in your name."""
    refuse_if_read_only("alerts ack")
    from console.alerts_text import silence_plan

    alerts = _alerts()
    with backend_errors():
        plan = alerts.plan_acknowledge(group, _minutes(duration))
        confirm(silence_plan(plan), yes=yes)
        silence_id = alerts.silence(plan)
    _done(silence_id, plan, as_json)


@app.command("silence")
def silence(
    matchers: Annotated[
        list[str],
        typer.Argument(help='Label matchers: name="value", name!=v, name=~"re", name!~"re".'),
    ],
    duration: ForOpt = "2h",
    comment: Annotated[
        str, typer.Option("--comment", "-c", help="Why (shown to everyone who sees it).")
    ] = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Silence the alerts the matchers match; shows how many match now before posting."""
    refuse_if_read_only("alerts silence")
    from console.alerts_text import silence_plan

    alerts = _alerts()
    with backend_errors():
        plan = alerts.plan_silence(matchers, _minutes(duration), comment)
        confirm(silence_plan(plan), yes=yes)
        silence_id = alerts.silence(plan)
    _done(silence_id, plan, as_json)


@app.command("expire")
def expire(
    silence_id: Annotated[str, typer.Argument(help="The silence's id (or its start).")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """End a silence now: the alerts it quieted notify again."""
    refuse_if_read_only("alerts expire")
    from console.alerts_text import expire_plan

    alerts = _alerts()
    with backend_errors():
        plan = alerts.plan_expire(silence_id)
        confirm(expire_plan(plan), yes=yes)
        alerts.expire(plan)
    if as_json:
        print_json({"expired": plan.silence.id, "quieted": len(plan.matching)})
        return
    typer.echo(f"expired silence {plan.silence.short_id}")


def _done(silence_id: str, plan: SilencePlan, as_json: bool) -> None:
    if as_json:
        print_json({"silence": silence_id, "plan": plan})
        return
    typer.echo(
        f"silence {silence_id[:8]} until {fmt.when(plan.ends_at)} "
        f"({len(plan.matching)} alert{'s' if len(plan.matching) != 1 else ''} matched)"
    )
