"""`mlops monitor`: live latency, errors and drift of the deployments; `mlops monitor targets`.

`mlops monitor [DEPLOYMENT] [--target URL] [--json] [--watch]` reads Prometheus when
PROMETHEUS_URL is set, and otherwise scrapes the servers' /metrics directly; it always says
which. Backends (and prometheus-api-client, docker) are imported inside the commands.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from console import format as fmt
from console.cli.common import JsonOpt, backend_errors, fail, print_json, to_jsonable
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from backends.prometheus.queries import Scope
    from backends.prometheus.sources import MetricsSource
    from backends.records import DeploymentHealth, Grouping, MonitorSnapshot


_sleep = time.sleep  # the watch loop's pause (tests replace it)


class _ShowUnlessSubcommand(TyperGroup):
    """`mlops monitor [DEPLOYMENT] ...` means `mlops monitor show [DEPLOYMENT] ...`.

    A group's own positional argument would swallow the name of a subcommand (`targets`), so
    anything that is not a subcommand (or --help) is handed to the `show` command instead.
    """

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # typer's vendored click.Context
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["show", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ShowUnlessSubcommand,
    help="Live latency, errors and drift of the deployments, from Prometheus or their /metrics.\n\n"
    "`mlops monitor [DEPLOYMENT] [OPTIONS]` is short for `mlops monitor show ...`.",
    rich_markup_mode=None,
)


class Source(StrEnum):
    auto = "auto"
    prometheus = "prometheus"
    scrape = "scrape"


class Per(StrEnum):
    deployment = "deployment"
    version = "version"


@app.command()
def show(
    deployment: Annotated[
        str | None, typer.Argument(metavar="DEPLOYMENT", help="Only this deployment.")
    ] = None,
    target: Annotated[
        list[str] | None,
        typer.Option(
            "--target",
            "-t",
            metavar="URL",
            help="Watch a server by its base URL (e.g. one `mlops serve` runs); no Docker needed. "
            "Repeat for more.",
        ),
    ] = None,
    model: Annotated[str | None, typer.Option("--model", help="Only this model.")] = None,
    per: Annotated[
        Per, typer.Option("--per", help="One row per deployment, or per model version.")
    ] = Per.deployment,
    as_json: JsonOpt = False,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Refresh in place until Ctrl-C.")
    ] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval",
            min=0.2,
            help="Seconds between refreshes; the direct scrape's first two reads are this apart.",
        ),
    ] = 2.0,
    window: Annotated[
        str, typer.Option("--window", help="Prometheus rate window (30s, 1m, 5m...).")
    ] = "1m",
    source: Annotated[
        Source,
        typer.Option(
            "--source",
            help="auto: Prometheus if PROMETHEUS_URL is set (and no --target), else scrape.",
        ),
    ] = Source.auto,
) -> None:
    """Request rate, error ratios, p50/p95/p99 latency, batch size, worst drift and alerts."""
    grouping: Grouping = per.value
    with backend_errors():
        metrics, scope = _open(deployment, target or [], model, source, window, interval)
    try:
        with backend_errors():
            snapshot = metrics.snapshot(scope, grouping)
            if deployment and not snapshot.rows:
                _not_found(deployment, metrics.description)
        if watch:
            _watch(metrics, scope, grouping, snapshot, interval, as_json)
        elif as_json:
            print_json(snapshot)
        else:
            _print(snapshot, grouping)
    finally:
        metrics.close()


@app.command()
def targets(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            help="The file_sd file to write (default $MLOPS_TARGETS_FILE, else "
            "~/.local/state/mlops-console/prometheus-targets.json).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the Prometheus file_sd targets file from the running deployments and their canary
    containers (Docker)."""
    from backends.lifecycle.targets import refresh_from_host
    from console.config import Settings

    with backend_errors():
        written = refresh_from_host(Settings.from_env().docker_host, file)
    if as_json:
        print_json(written)
        return
    verb = "wrote" if written.changed else "unchanged:"
    count = len(written.targets)
    typer.echo(f"{verb} {written.path} ({count} target{'' if count == 1 else 's'})")
    for t in written.targets:
        alias = f"@{t.alias}" if t.alias else ""
        role = f" ({t.role})" if t.role else ""
        typer.echo(f"  {t.deployment:<20} {t.address:<22} {t.model}/{t.version}{alias}{role}")


# --------------------------------------------------------------------------- sources


def _open(
    deployment: str | None,
    urls: list[str],
    model: str | None,
    source: Source,
    window: str,
    interval: float,
) -> tuple[MetricsSource, Scope]:
    """The metrics source the options ask for, and the scope of the question."""
    from backends.prometheus.discovery import base_url
    from backends.prometheus.queries import Scope, duration_seconds
    from console.config import Settings

    settings = Settings.from_env()
    duration_seconds(window)  # a bad --window is a usage error before anything is contacted
    use_prometheus = source is Source.prometheus or (
        source is Source.auto and settings.prometheus_url is not None and not urls
    )
    if use_prometheus:
        from backends.prometheus.prometheus_source import PrometheusSource

        if settings.prometheus_url is None:
            fail(
                "--source prometheus needs PROMETHEUS_URL (the Prometheus base URL)", ExitCode.USAGE
            )
        if len(urls) > 1:
            fail("with --source prometheus, give at most one --target", ExitCode.USAGE)
        instance = base_url(urls[0]).split("://", 1)[1].split("/", 1)[0] if urls else None
        scope = Scope(deployment=deployment, model=model, instance=instance)
        return PrometheusSource(settings.prometheus_url, window=window), scope

    from backends.prometheus.scrape_source import ScrapeSource
    from backends.records import ScrapeTarget

    if urls:
        found = [ScrapeTarget(url=base_url(u)) for u in urls]
    else:
        from backends.lifecycle.targets import running_deployments
        from backends.prometheus.discovery import scrape_targets

        found = scrape_targets(running_deployments(settings.docker_host))
        if deployment and not any(t.deployment == deployment for t in found):
            _not_found(deployment, "Docker")
    return ScrapeSource(found, interval=interval), Scope(deployment=deployment, model=model)


def _not_found(deployment: str, where: str) -> None:
    from backends.errors import NotFound

    raise NotFound(
        f"no running deployment named {deployment!r} in {where} "
        "(`mlops monitor` lists them; `mlops monitor targets` updates Prometheus' list)"
    )


# --------------------------------------------------------------------------- output


def _watch(
    metrics: MetricsSource,
    scope: Scope,
    per: Grouping,
    first: MonitorSnapshot,
    interval: float,
    as_json: bool,
) -> None:
    """Refresh until Ctrl-C; a failed refresh is shown (and retried), not fatal."""
    from rich.live import Live

    from backends.errors import BackendError

    snapshot, problem = first, ""
    try:
        if as_json:
            _json_line(snapshot)
            while True:
                _sleep(interval)
                try:
                    _json_line(metrics.snapshot(scope, per))
                except BackendError as exc:  # said on stderr; stdout only ever gets fresh data
                    typer.echo(f"error: {exc.title}: {exc.message} (retrying)", err=True)
        with Live(_render(snapshot, per), auto_refresh=False) as live:
            while True:
                _sleep(interval)
                try:
                    snapshot = metrics.snapshot(scope, per)
                    problem = ""
                except BackendError as exc:
                    now = datetime.now(UTC).strftime("%H:%M:%S")
                    problem = f"refresh failed at {now} UTC: {exc.title}: {exc.message} (retrying)"
                live.update(_render(snapshot, per, problem), refresh=True)
    except KeyboardInterrupt:
        return


def _json_line(snapshot: MonitorSnapshot) -> None:
    import json

    sys.stdout.write(json.dumps(to_jsonable(snapshot), sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def _print(snapshot: MonitorSnapshot, per: str) -> None:
    from rich.console import Console

    Console().print(_render(snapshot, per))


# Columns: header, right-aligned, and whether a narrow terminal (< 120 columns) keeps it.
_COLUMNS = [
    ("DEPLOYMENT", False, True),
    ("MODEL", False, True),
    ("UP", False, True),
    ("REQ/S", True, True),
    ("5XX", True, True),
    ("4XX", True, False),
    ("P50", True, False),
    ("P95", True, True),
    ("P99", True, True),
    ("BATCH", True, False),
    ("DRIFT (PSI)", False, True),
    ("QUALITY", False, True),
    ("ALERTS", False, True),
]


def _render(snapshot: MonitorSnapshot, per: str, problem: str = "") -> Any:
    from rich import box
    from rich.console import Console, Group
    from rich.table import Table
    from rich.text import Text

    wide = Console().width >= 120
    shown = [i for i, (_, _, narrow) in enumerate(_COLUMNS) if wide or narrow]
    table = Table(
        title=_title(snapshot),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for i in shown:
        header, numeric, _ = _COLUMNS[i]
        # Numbers never wrap; names and drift fold when the terminal is narrow.
        table.add_column(
            header,
            justify="right" if numeric else "left",
            no_wrap=numeric,
            min_width=len(header),
            overflow="fold",
        )
    for row in snapshot.rows:
        cells = _cells(row, per, snapshot.alerts is not None)
        table.add_row(*(cells[i] for i in shown))
    parts: list[Any] = [table]
    if not snapshot.rows:
        parts.append(Text("no deployments to watch", style="yellow"))
    for row in snapshot.rows:
        if row.error:
            parts.append(Text(f"{_who(row, per)}: {row.error}", style="red"))
    for alert in snapshot.alerts or ():
        since = f" since {alert.active_since:%H:%M:%S} UTC" if alert.active_since else ""
        where = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "severity")
        style = "bold red" if alert.state == "firing" else "yellow"
        parts.append(Text(f"{alert.state.upper():8} {alert.name} ({where}){since}", style=style))
    if problem:
        parts.append(Text(problem, style="bold red"))
    return Group(*parts)


def _title(snapshot: MonitorSnapshot) -> str:
    at = snapshot.taken_at.strftime("%H:%M:%S UTC")
    if snapshot.alerts is None:
        window = f"last {snapshot.window_seconds:.1f}s (between two scrapes)"
        return f"source: {snapshot.source} · {window} · {at} · alert rules need Prometheus"
    return f"source: {snapshot.source} · window {fmt.span(snapshot.window_seconds)} · {at}"


def _who(row: DeploymentHealth, per: str) -> str:
    if per == "version":
        return "(all)"
    return row.deployment or row.instance or "-"


def _cells(row: DeploymentHealth, per: str, has_alerts: bool) -> list[Any]:
    """One cell per entry of _COLUMNS."""
    from rich.text import Text

    model = f"{row.model or '?'}/{row.version or '?'}" + (f" @{row.alias}" if row.alias else "")
    up = Text("up", style="green") if row.up else Text("DOWN", style="bold red")
    worst = row.worst_drift
    drift: Any = "-"
    if worst is not None and worst.psi is not None:
        drift = Text(
            f"{worst.feature} {worst.psi:.2f}" + (" DRIFT" if worst.drifted else ""),
            style="bold red" if worst.drifted else "",
        )
    alerts: Any = "n/a" if not has_alerts else "-"
    if row.alerts:
        firing = sum(a.state == "firing" for a in row.alerts)
        counts = [f"{firing} firing" if firing else "", f"{len(row.alerts) - firing} pending"]
        text = ", ".join(c for c in counts if c and not c.startswith("0 "))
        alerts = Text(text, style="bold red" if firing else "yellow")
    return [
        _who(row, per),
        model,
        up,
        "-" if row.request_rate is None else f"{row.request_rate:.1f}",
        fmt.percent(row.error_ratio, 1),
        fmt.percent(row.client_error_ratio, 1),
        fmt.latency(row.latency.p50),
        fmt.latency(row.latency.p95),
        fmt.latency(row.latency.p99),
        "-" if row.batch_size_mean is None else f"{row.batch_size_mean:.1f}",
        drift,
        fmt.quality(row.quality, row.labelled_rows, row.label_coverage),
        alerts,
    ]
