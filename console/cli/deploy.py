"""`mlops deploy ...`: run serving containers, see which version answers where, roll back."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

from console.cli.common import (
    JsonOpt,
    YesOpt,
    backend_errors,
    confirm,
    print_json,
    refuse_if_read_only,
    to_jsonable,
    warn,
)
from console.cli.progress import Steps, build_log

if TYPE_CHECKING:
    from backends.docker.swarm import VersionReplicas
    from backends.lifecycle.handles import Handles
    from backends.records import Deployment, RollbackOutcome

app = typer.Typer(
    help="Deployments: the live map of containers to model versions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _handles() -> Handles:
    from backends.lifecycle.handles import Handles
    from console.config import Settings

    settings = Settings.from_env()
    return Handles(settings.tracking_uri, settings.docker_host)


def _switch_log(steps: Steps, switching: str, *, builds: bool) -> Callable[[str], None]:
    """The build's steps (if it builds first), then the switch as a step of its own: it waits
    for the new version's /ready, which is where a deploy spends its time when nothing builds.
    Docker's other output is only shown beside the step on a terminal."""
    log = build_log(steps, details=False)
    if not builds:
        steps.step(switching)

    def on_log(line: str) -> None:
        log(line)
        if line.startswith("Successfully tagged "):  # Docker's last line of a build
            steps.step(switching)

    return on_log


@app.command("up")
def up(
    model_ref: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    name: Annotated[
        str | None, typer.Option("--name", help="Deployment name (default: the model name).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", help="Port (default: the deployment's own, else 8080)."),
    ] = None,
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            help="Address to bind (default: the deployment's own, else 127.0.0.1, or 0.0.0.0 "
            "on an engine on another host; 0.0.0.0 widens it).",
        ),
    ] = None,
    follow_alias: Annotated[
        bool,
        typer.Option("--follow-alias", help="Resolve the alias at start and reload when it moves."),
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the history.")] = "",
    replicas: Annotated[
        int | None,
        typer.Option(
            "--replicas",
            min=1,
            max=100,
            help="Tasks of the version (swarm contexts; default: as many as the version it "
            "replaces, else 1).",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout",
            min=1,
            help="Seconds the new version has to be ready (default: 120; 180 on a swarm); "
            "past them it is removed, the old one serves on, exit 1.",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a model version; on an existing deployment, switch with no failed request.

    The plan (which version replaces which) is shown first; applying it refuses (exit 5) if
    the deployment changed in between.
    """
    refuse_if_read_only("deploy up")
    from backends.lifecycle import deploy as deploy_ops
    from backends.lifecycle import placement
    from console.plans import deploy_summary

    with backend_errors():
        if name is not None:
            deploy_ops.check_name(name)  # a usage error, before any engine is asked
        with _handles() as h:
            placement.check_replicas(h, replicas)  # before the plan asks anything or builds
            plan = deploy_ops.plan_deploy(
                h, model_ref, name=name, port=port, host=host, follow_alias=follow_alias
            )
            confirm(deploy_summary(plan), yes=yes)
            was = f", then switching from v{plan.replaces}" if plan.current is not None else ""
            switching = f"{plan.name}: starting v{plan.version.version}, waiting for /ready{was}"
            with Steps(silent=quiet) as steps:
                on_log = _switch_log(steps, switching, builds=plan.image is None)
                outcome = deploy_ops.apply_deploy(
                    h, plan, reason=reason, on_log=on_log, replicas=replicas, timeout=timeout
                )
    warn(outcome.warning)
    deployment, replaced = outcome.deployment, outcome.replaced
    if as_json:
        print_json(_with_url(deployment))
    else:
        was = f" (was v{replaced})" if replaced else ""
        typer.echo(
            f"{deployment.name}: {deployment.model} v{deployment.version} serving on "
            f"{deployment.url}{was}"
        )


@app.command("rollback")
def rollback(
    name: Annotated[str, typer.Argument(help="Deployment name")],
    to: Annotated[
        int | None,
        typer.Option("--to", help="Version to go to (default: the one deployed before)."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the history.")] = "",
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Back to the previously deployed version, with no failed request.

    The plan is shown first; applying it refuses (exit 5) if the deployment (or the alias it
    follows) moved in between. Nothing to roll back to: exit 1, nothing changes.
    """
    refuse_if_read_only("deploy rollback")
    from backends.lifecycle import rollback as rollback_ops
    from console.plans import rollback_summary

    with backend_errors(), _handles() as h:
        plan = rollback_ops.plan_rollback(h, name, to=to)
        confirm(rollback_summary(plan), yes=yes)
        with Steps(silent=plan.via_alias) as steps:  # an alias move is one quick call
            switching = (
                f"{name}: starting v{plan.to_version}, waiting for /ready, "
                f"then switching from v{plan.from_version}"
            )
            on_log = _switch_log(steps, switching, builds=plan.image_missing)
            outcome = rollback_ops.apply_rollback(h, plan, reason=reason, on_log=on_log)
    warn(outcome.warning)
    if as_json:
        print_json(_rollback_document(outcome))
    elif outcome.via_alias:
        _say_alias_rolled_back(outcome)
    else:
        typer.echo(f"{name}: rolled back from v{outcome.from_version} to v{outcome.to_version}")


def _rollback_document(outcome: RollbackOutcome) -> dict[str, object]:
    """The same keys for both kinds of rollback: ``deployment`` (with its ``url``) after a
    container switch, ``alias_event`` (None: the alias was already there) after an alias move."""
    doc: dict[str, object] = to_jsonable(outcome)
    doc["via_alias"] = outcome.via_alias
    if outcome.deployment is not None:
        doc["deployment"] = _with_url(outcome.deployment)
    return doc


def _say_alias_rolled_back(outcome: RollbackOutcome) -> None:
    """A follow-alias deployment serves what its alias names: the alias moved, not a container."""
    if outcome.alias_event is None:
        typer.echo(
            f"{outcome.name}: {outcome.alias} already names v{outcome.to_version}; nothing moved"
        )
        return
    typer.echo(
        f"{outcome.name}: {outcome.model}@{outcome.alias} rolled back from v{outcome.from_version} "
        f"to v{outcome.to_version}; the deployment follows the alias and reloads in place"
    )


@app.command("ps")
def ps(as_json: JsonOpt = False) -> None:
    """Deployments: name, model, version, alias, image, state, health, port, uptime; on a
    swarm context, each version's replicas running of desired and their nodes."""
    from backends.docker import containers, swarm
    from backends.lifecycle import placement
    from console import format as fmt

    with backend_errors(), _handles() as h:
        found = placement.list_deployments(h)
        tasks = swarm.replicas(h.docker()) if h.engine == "swarm" else []
    if as_json:
        print_json(
            [
                {**_with_url(d), **({"replicas": _replicas_of(d, tasks)} if tasks else {})}
                for d in found
            ]
        )
        return
    if not found:
        typer.echo("no deployments (mlops deploy up NAME@ALIAS)")
        return
    typer.echo(
        f"{'NAME':16} {'MODEL':16} {'VER':>4} {'ALIAS':10} {'STATE':9} {'HEALTH':10} "
        f"{'ADDRESS':22} {'UPTIME':>8}  IMAGE"
    )
    for d in found:
        typer.echo(
            f"{d.name:16} {d.model:16} {fmt.version(d.version):>4} {d.alias or '-':10} {d.state:9} "
            f"{d.health:10} {d.url or '-':22} {fmt.duration(containers.uptime(d)):>8}  {d.image}"
        )
    if tasks:
        typer.echo(f"\n{'DEPLOYMENT':16} {'VER':>4} {'REPLICAS':9} {'SERVING':8} NODES")
        for r in tasks:
            typer.echo(
                f"{r.deployment:16} {fmt.version(r.version):>4} "
                f"{f'{r.running}/{r.desired}':9} {'yes' if r.serving else 'no':8} "
                f"{', '.join(r.nodes) or '-'}"
            )


@app.command("scale")
def scale(
    name: Annotated[str, typer.Argument(help="Deployment name")],
    replicas: Annotated[int, typer.Argument(help="Tasks of the serving version (1-100)")],
    as_json: JsonOpt = False,
) -> None:
    """Run N tasks of the version a swarm deployment serves; returns once N run healthy."""
    refuse_if_read_only("deploy scale")
    from backends.lifecycle import deploy as deploy_ops

    with backend_errors(), _handles() as h:
        row = deploy_ops.scale(h, name, replicas)
    if as_json:
        print_json(row)
    else:
        typer.echo(
            f"{name}: v{row.version} {row.running}/{row.desired} replicas running on "
            f"{', '.join(sorted(set(row.nodes))) or '-'}"
        )


def _replicas_of(d: Deployment, rows: list[VersionReplicas]) -> list[dict[str, object]]:
    return [to_jsonable(r) for r in rows if r.deployment == d.name]


@app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="Deployment name")],
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[int, typer.Option("--tail", "-n")] = 100,
) -> None:
    """The serving container's log (`--follow` streams it); on a swarm, its service's."""
    from backends.docker import containers, swarm

    with backend_errors(), _handles() as h:
        read = swarm.deployment_logs if h.engine == "swarm" else containers.deployment_logs
        try:
            for line in read(h.docker(), name, follow=follow, tail=tail):
                typer.echo(line)
        except KeyboardInterrupt:
            pass


@app.command("down")
def down(
    name: Annotated[str, typer.Argument(help="Deployment name")],
    yes: YesOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop and remove a deployment (its containers drain before they stop)."""
    refuse_if_read_only("deploy down")
    from backends.lifecycle import deploy as deploy_ops
    from console.plans import take_down_summary

    with backend_errors(), _handles() as h:
        plan = deploy_ops.plan_take_down(h, name)
        confirm(take_down_summary(plan), yes=yes)
        with Steps() as steps:
            steps.step(f"{name}: draining and removing {', '.join(plan.containers)}")
            outcome = deploy_ops.apply_take_down(h, plan)
    warn(outcome.warning)
    if as_json:
        print_json(outcome)
    else:
        typer.echo(f"{name}: removed {', '.join(outcome.removed)}")


def _with_url(d: Deployment) -> dict[str, object]:
    doc: dict[str, object] = to_jsonable(d)
    doc["url"] = d.url
    return doc


def _register_canary() -> None:
    from console.cli.canary import canary

    app.command("canary")(canary)


_register_canary()
