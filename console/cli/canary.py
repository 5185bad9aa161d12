"""`mlops deploy canary`: a metric-driven canary release of a deployment, and the person's
part in it (watch, resume, abort, promote)."""

from __future__ import annotations

import math
import time
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from console.cli.common import (
    JsonOpt,
    YesOpt,
    backend_errors,
    confirm,
    fail,
    print_json,
    refuse_if_read_only,
)
from console.cli.exit_codes import ExitCode
from console.cli.progress import Steps, build_log


class FiguresFrom(StrEnum):
    auto = "auto"
    prometheus = "prometheus"
    scrape = "scrape"


if TYPE_CHECKING:
    from backends.lifecycle.canary import Release
    from backends.lifecycle.handles import Handles


def canary(
    name: Annotated[str, typer.Argument(help="Deployment name")],
    model_ref: Annotated[
        str | None,
        typer.Argument(help="The version to release: NAME/VERSION or NAME@ALIAS (omit to watch)"),
    ] = None,
    steps: Annotated[
        str, typer.Option("--steps", help="Canary weights in percent, rising, the last 100.")
    ] = "10,25,50,100",
    interval: Annotated[
        str, typer.Option("--interval", help="Time between evaluations (30s, 1m).")
    ] = "1m",
    check: Annotated[
        list[str] | None,
        typer.Option(
            "--check",
            help="A check on the canary's own figures, e.g. 'error_ratio<0.01', 'p99<0.25', "
            "'accuracy>=stable-0.02' (repeatable).",
        ),
    ] = None,
    failure_limit: Annotated[
        int, typer.Option("--failure-limit", help="Failed evaluations that abort.")
    ] = 2,
    sticky_header: Annotated[
        str,
        typer.Option(
            "--sticky-header", help="Route by a hash of this header (default: per request)."
        ),
    ] = "",
    mirror: Annotated[
        float | None,
        typer.Option(
            "--mirror",
            help="Shadow mode: a copy of PCT % of the prediction requests goes to MODEL_REF, "
            "its answers compared and discarded (no weights, no checks).",
            metavar="PCT",
        ),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the history.")] = "",
    source: Annotated[
        FiguresFrom,
        typer.Option(
            "--source",
            help="Where a release's figures come from: auto (Prometheus when PROMETHEUS_URL "
            "is set, else the containers' own /metrics), prometheus, scrape.",
        ),
    ] = FiguresFrom.auto,
    detach: Annotated[
        bool, typer.Option("--detach", help="Start it and return; the analysis goes on.")
    ] = False,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", help="Watch the release until it ends, pauses or loses its worker."
        ),
    ] = False,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help="Stop following after this long from the command's start (90s, 30m): exit 1, "
            "the release goes on as it is.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Resume a paused analysis.")] = False,
    abort: Annotated[
        bool, typer.Option("--abort", help="All traffic back to stable; the canary goes.")
    ] = False,
    promote: Annotated[
        bool, typer.Option("--promote", help="Make the canary the stable version now.")
    ] = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Release MODEL_REF as a canary of deployment NAME: its weight rises step by step while
    every check passes on its own series; after --failure-limit failed evaluations it is
    aborted (all traffic back to stable, 0 failed requests), and when a check cannot be
    evaluated (no traffic, a server not answering) it pauses for a person. The analysis runs
    in a process of its own: this command, another shell or the console reattach to it.

    Followed (the default with MODEL_REF, --follow without) until it ends, pauses for a
    person or is left without a worker, or for --timeout. Without MODEL_REF: the release's
    state, or a person's --resume / --abort / --promote. Exit 0 when promoted; 1 when aborted,
    paused, left without a worker or still running at --timeout (the release stays as it is).
    """
    from backends.lifecycle import canary as releases

    commands = [c for c, on in (("resume", resume), ("abort", abort), ("promote", promote)) if on]
    if len(commands) > 1:
        fail("give one of --resume, --abort, --promote", ExitCode.USAGE)
    if commands and model_ref is not None:
        fail(f"--{commands[0]} acts on the running release: give no MODEL_REF", ExitCode.USAGE)
    if detach and follow:
        fail("--detach returns at once, --follow watches: give one", ExitCode.USAGE)
    if timeout is not None:
        if mirror is not None:
            fail(
                "--timeout limits following a canary release; a shadow is not followed",
                ExitCode.USAGE,
            )
        if detach or commands or (model_ref is None and not follow):
            fail(
                "--timeout limits following a release: start one without --detach, or --follow",
                ExitCode.USAGE,
            )
    deadline = _deadline(timeout)
    with backend_errors():
        from backends.canary.analysis import Plan
        from backends.lifecycle.deploy import check_name

        check_name(name)
        if source is not FiguresFrom.auto and (model_ref is None or mirror is not None):
            fail(
                "--source applies to starting a canary release (MODEL_REF, no --mirror)",
                ExitCode.USAGE,
            )
        if model_ref is not None and mirror is not None:
            refuse_if_read_only("deploy canary --mirror")
            if check:
                fail("--mirror runs a shadow, judged by no check: drop --check", ExitCode.USAGE)
            _start_shadow(name, model_ref, mirror, reason, yes=yes, as_json=as_json)
            return
        if model_ref is not None:
            refuse_if_read_only("deploy canary")
            plan = Plan.parse(steps, interval, failure_limit, check or [])
            prometheus_url = _figures_source(source)
            with _handles() as h:
                planned = releases.plan_release(
                    h,
                    name,
                    model_ref,
                    plan,
                    sticky_header=sticky_header,
                    reason=reason,
                    prometheus_url=prometheus_url,
                )
                confirm(_summary(planned), yes=yes)
                with Steps(silent=as_json) as progress:
                    log = build_log(progress, details=False)
                    release = releases.start_release(h, planned, on_log=log)
            if not as_json:
                pid = release.worker_pid or "?"
                typer.echo(
                    f"{name}: v{release.canary_version} takes {release.state.weight:g} % of the "
                    f"traffic; the analysis runs in the background (pid {pid})"
                )
            if detach:
                _show(release, as_json)
                return
            _follow(name, as_json, deadline)
            return
        if commands:
            command = commands[0]
            refuse_if_read_only(f"deploy canary --{command}")
            current = releases.read_release(name)
            what = f"{command} the canary release of {name}" + (
                f" (v{current.canary_version}, {current.state.status})" if current else ""
            )
            confirm(what, yes=yes, question=f"{command.capitalize()} it?")
            with _handles() as h:
                if command == "abort":
                    aborted = releases.abort_release(h, name, reason)
                    if aborted is None:
                        if as_json:
                            print_json({"deployment": name, "removed": True, "release": None})
                        else:
                            typer.echo(f"{name}: the candidate was removed (no release running)")
                        return
                    _show(aborted, as_json)
                    return
                current = releases.read_release(name)
                if command == "promote" and (current is None or current.state.finished):
                    from backends.lifecycle.shadow import promote_shadow

                    deployment = promote_shadow(h, name, reason)
                    if as_json:
                        print_json({"deployment": name, "promoted": deployment.version})
                    else:
                        typer.echo(f"{name}: the shadow's v{deployment.version} is stable now")
                    return
                _show(releases.request(h, name, command, reason), as_json)
            return
    kept = releases.read_release(name)
    if kept is None or kept.state.finished:
        with backend_errors(), _handles() as h:
            from backends.lifecycle.shadow import shadow_figures

            shadow = shadow_figures(h, name)
        if shadow is not None:
            _show_shadow(shadow, as_json)
            return
    if kept is None:
        fail(
            f"no canary release of {name!r} here (start one: mlops deploy canary {name} MODEL)",
            ExitCode.NOT_FOUND,
        )
    if follow:
        _follow(name, as_json, deadline)
        return
    _show(kept, as_json)


def _handles() -> Handles:
    from console.cli.deploy import _handles as handles

    return handles()


def _figures_source(source: FiguresFrom) -> str:
    """The Prometheus URL the figures come from, "" for the direct scrape."""
    from console.config import Settings

    url = Settings.from_env().prometheus_url
    if source is FiguresFrom.prometheus and url is None:
        fail("--source prometheus needs PROMETHEUS_URL (the Prometheus base URL)", ExitCode.USAGE)
    return "" if source is FiguresFrom.scrape else url or ""


def _summary(planned: object) -> str:
    from backends.lifecycle.canary import ReleasePlan

    assert isinstance(planned, ReleasePlan)
    plan = planned.plan
    d = planned.deployment
    lines = [
        f"deployment {d.name}: {d.model} v{d.version} stays the stable version",
        f"canary     {planned.version.name} v{planned.version.version}",
        f"steps      {' → '.join(f'{w:g} %' for w in plan.steps)}, every {plan.interval:g} s",
        f"checks     {', '.join(c.describe() for c in plan.checks)}",
        f"aborts     after {plan.failure_limit} failed evaluation(s)",
        "figures    from "
        + (
            f"Prometheus {planned.prometheus_url}"
            if planned.prometheus_url
            else "the containers' own /metrics (direct scrape)"
        ),
    ]
    if planned.sticky_header:
        lines.append(f"sticky     by header {planned.sticky_header}")
    return "\n".join(lines)


def _deadline(text: str | None) -> tuple[float, str] | None:
    """When following must stop (on the monotonic clock, counted from the command's start: a
    CI job's limit covers the build and the start too), and ``--timeout`` as given; None
    without one. A number is seconds; else a duration as --interval takes (90s, 30m, 1h30m)."""
    if text is None:
        return None
    from backends.errors import InvalidInput
    from backends.prometheus.queries import duration_seconds

    seconds: float | None
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = duration_seconds(text.strip())
        except (InvalidInput, OverflowError):
            seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        fail(f"--timeout {text!r} is not a positive duration (try 90s, 30m)", ExitCode.USAGE)
    return time.monotonic() + seconds, text.strip()


ORPHANED_READS = 3  # a second apart: a release whose worker is gone is not followed further


def _follow(name: str, as_json: bool, deadline: tuple[float, str] | None = None) -> None:
    """Print each decision as the worker makes it, until the release ends or pauses for a
    person, or is left without a worker, or until ``deadline`` (Ctrl-C and the deadline leave
    it running). Exit 0 when promoted, 1 otherwise.

    A pause ends the following: the release waits for a person's resume, abort or promote,
    and a scripted release (CI, ``--yes``) must not wait with it for ever."""
    from backends.lifecycle.canary import read_release

    seen, problem, orphaned = 0, "", 0
    try:
        while True:
            release = read_release(name)
            if release is None:
                fail(f"the canary release of {name!r} is gone", ExitCode.NOT_FOUND)
            history = release.state.history
            if not as_json:
                for decision in history[seen:]:
                    typer.echo(f"{time.strftime('%H:%M:%S')} {decision.line}")
                if release.problem and release.problem != problem:
                    typer.echo(f"{time.strftime('%H:%M:%S')} problem: {release.problem}", err=True)
            seen, problem = len(history), release.problem
            if release.state.finished or _waits_for_a_person(release):
                break
            # Nobody drives a release whose worker is gone: nothing will change to follow.
            # Three reads in a row, each afresh: a worker that has just finished the release
            # and exited is read as finished on the next one.
            orphaned = 0 if release.worker_alive else orphaned + 1
            if orphaned >= ORPHANED_READS:
                typer.echo(
                    f"no canary worker is running for {name}: the release stays at "
                    f"{release.state.weight:g} %; `mlops deploy canary {name} --resume` "
                    "starts one",
                    err=True,
                )
                break
            if deadline is not None and time.monotonic() >= deadline[0]:
                typer.echo(
                    f"{name}: the release is still {release.state.status} at "
                    f"{release.state.weight:g} % after --timeout {deadline[1]}; the analysis goes "
                    f"on (reattach: mlops deploy canary {name} --follow; end it: --abort or "
                    "--promote)",
                    err=True,
                )
                _show(release, as_json)
                raise typer.Exit(ExitCode.CHECK_FAILED)
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo(
            f"\nthe analysis goes on in the background; reattach: mlops deploy canary {name} "
            "--follow",
            err=True,
        )
        raise typer.Exit(130) from None
    _show(release, as_json)
    _exit_for(release)


def _show(release: Release, as_json: bool) -> None:
    state = release.state
    if as_json:
        doc = {
            "deployment": release.deployment,
            "model": release.model,
            "stable_version": release.stable_version,
            "canary_version": release.canary_version,
            "status": str(state.status),
            "weight": state.weight,
            "step": state.step,
            "failures": state.failures,
            "plan": state.plan.to_dict(),
            "next_evaluation": release.next_evaluation or None,
            "figures": release.figures,
            "figures_source": release.figures_source,
            "history": [d.to_dict() for d in state.history],
            "worker_pid": release.worker_pid if release.worker_alive else None,
            "problem": release.problem or None,
        }
        print_json(doc)
        return
    typer.echo(
        f"{release.deployment}: canary v{release.canary_version} beside stable "
        f"v{release.stable_version}: {state.status}, {state.weight:g} %, step "
        f"{state.step + 1}/{len(state.plan.steps)}, {state.failures} failed evaluation(s)"
    )
    if release.next_evaluation and not state.finished:
        wait = max(0.0, release.next_evaluation - time.time())
        typer.echo(f"next evaluation in {wait:.0f} s")
    if state.last is not None:
        typer.echo(f"last: {state.last.line}")
    typer.echo(f"figures from {release.figures_source}")
    if release.problem:
        typer.echo(f"problem: {release.problem}")
    if state.status == "paused":
        typer.echo(
            f"waiting for a person: mlops deploy canary {release.deployment} "
            "--resume | --abort | --promote"
        )


def _waits_for_a_person(release: Release) -> bool:
    """Paused with no person's command on its way to the worker."""
    return str(release.state.status) == "paused" and not release.command


def _exit_for(release: Release) -> None:
    """0 promoted; 1 aborted, paused for a person, or left without a worker."""
    if str(release.state.status) != "promoted":
        raise typer.Exit(int(ExitCode.CHECK_FAILED))


def _start_shadow(
    name: str, reference: str, percent: float, reason: str, *, yes: bool, as_json: bool
) -> None:
    from backends.lifecycle import shadow

    with _handles() as h:
        planned = shadow.plan_shadow(h, name, reference, percent, reason=reason)
        d = planned.deployment
        confirm(
            f"deployment {d.name}: {d.model} v{d.version} keeps answering every request\n"
            f"shadow     {planned.version.name} v{planned.version.version} gets a copy of "
            f"{percent:g} % of the prediction requests (answers compared, then discarded)",
            yes=yes,
        )
        with Steps(silent=as_json) as progress:
            shadow.start_shadow(h, planned, on_log=build_log(progress, details=False))
        figures = shadow.shadow_figures(h, name)
    if figures is not None:
        _show_shadow(figures, as_json)


def _show_shadow(figures: object, as_json: bool) -> None:
    from backends.lifecycle.shadow import ShadowFigures

    assert isinstance(figures, ShadowFigures)
    if as_json:
        print_json(figures)
        return
    ratio = (
        "no rows compared yet"
        if figures.disagreement_ratio is None
        else f"{figures.disagreement_ratio:.2%} of the last {figures.window_rows} rows differ"
    )
    p99 = "n/a" if figures.p99 is None else f"{figures.p99 * 1000:.0f} ms"
    mad = figures.mean_absolute_difference
    typer.echo(
        f"{figures.deployment}: shadow v{figures.version} gets {figures.percent:g} % of the "
        f"prediction requests: {ratio}; mean absolute difference "
        f"{'n/a' if mad is None else f'{mad:.4g}'}; {figures.copies} answers, "
        f"{figures.errors} errors, {figures.dropped} dropped; "
        f"p99 {p99}"
    )
    typer.echo(f"promote it: mlops deploy canary {figures.deployment} --promote; stop it: --abort")
