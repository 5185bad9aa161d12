"""`mlops deploy ...`: run serving containers, see which version answers where, roll back."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer

from console.cli.common import backend_errors, fail, print_json
from console.cli.exit_codes import ExitCode

if TYPE_CHECKING:
    from backends.records import Deployment, ServingImage
    from console.config import Settings

app = typer.Typer(
    help="Deployments: the live map of containers to model versions.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (stable keys).")]


def _image_for(client: object, settings: Settings, model_ref: str, quiet: bool) -> ServingImage:
    """The image for the version ``model_ref`` names now, built when missing."""
    from backends import images

    resolved = images.resolve_version(settings.tracking_uri, model_ref)
    found = images.find_image(client, resolved.name, resolved.version, resolved.run_id)
    if found is not None:
        return found
    if not quiet:
        typer.echo(f"no image for {resolved.uri} yet; building it")
    return images.build_image(
        client, settings.tracking_uri, resolved, on_log=(lambda _: None) if quiet else _step_only
    )


def _step_only(line: str) -> None:
    if line.startswith("Step ") or line.startswith("Successfully"):
        typer.echo(f"  {line}")


@app.command("up")
def up(
    model_ref: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    name: Annotated[
        str | None, typer.Option("--name", help="Deployment name (default: the model name).")
    ] = None,
    port: Annotated[int, typer.Option("--port", help="The deployment's address port.")] = 8080,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to bind (127.0.0.1 by default; 0.0.0.0 widens it)."),
    ] = "127.0.0.1",
    follow_alias: Annotated[
        bool,
        typer.Option("--follow-alias", help="Resolve the alias at start and reload when it moves."),
    ] = False,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the history.")] = "",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Run a model version; on an existing deployment, switch with no failed request."""
    from backends import containers, docker_engine, images
    from console.config import Settings

    if name is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        fail(f"invalid deployment name {name!r}: use letters, digits, '_' or '-'", ExitCode.USAGE)
    settings = Settings.from_env()
    with backend_errors():
        client = docker_engine.connect(settings.docker_host)
        image = _image_for(client, settings, model_ref, quiet or as_json)
        model_name, alias, _ = images.parse_reference(model_ref)
        if follow_alias and not alias:
            fail("--follow-alias needs a NAME@ALIAS reference", ExitCode.USAGE)
        follow = model_ref if follow_alias else None
        deployment, replaced = containers.deploy(
            client,
            image,
            name or _default_name(model_name),
            port=port,
            host=host,
            alias=alias or "",
            follow_alias_ref=follow,
            tracking_uri=settings.tracking_uri,
        )
        _record(settings, deployment, "deploy", replaced, reason)
        _refresh_targets(client)
    if as_json:
        print_json(deployment)
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
        str | None,
        typer.Option("--to", help="Version to go to (default: the one deployed before)."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Kept in the history.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Back to the previously deployed version, with no failed request."""
    from backends import containers, docker_engine
    from console.config import Settings

    settings = Settings.from_env()
    with backend_errors():
        client = docker_engine.connect(settings.docker_host)
        current = containers.get_deployment(client, name)
        if current.follow_alias:
            _rollback_alias(settings, current, to, reason)
            return
        target = to or containers.rollback_target(client, name)
        image = _image_for(client, settings, f"{current.model}/{target}", as_json)
        deployment, replaced = containers.deploy(
            client,
            image,
            name,
            port=current.port or 8080,
            host=current.host,
            alias="",  # a rollback serves an older version: the alias no longer names it
            tracking_uri=settings.tracking_uri,
        )
        _record(settings, deployment, "rollback", replaced, reason)
        _refresh_targets(client)
    if as_json:
        print_json(deployment)
    else:
        typer.echo(f"{name}: rolled back from v{replaced} to v{deployment.version}")


def _rollback_alias(settings: Settings, current: Deployment, to: str | None, reason: str) -> None:
    """A follow-alias deployment serves what its alias names: roll the alias back instead."""
    from backends.registry import Registry

    alias = current.alias or "champion"
    event = Registry(settings.tracking_uri).rollback(
        current.model, alias=alias, to=int(to) if to else None, reason=reason
    )
    if event is None:
        typer.echo(f"{current.name}: {alias} already names v{to}; nothing moved")
        return
    typer.echo(
        f"{current.name}: {current.model}@{alias} rolled back from v{event.from_version} to "
        f"v{event.to_version}; the deployment follows the alias and reloads in place"
    )


@app.command("ps")
def ps(as_json: JsonOpt = False) -> None:
    """Deployments: name, model, version, alias, image, state, health, port, uptime."""
    from backends import containers, docker_engine
    from console.config import Settings

    with backend_errors():
        client = docker_engine.connect(Settings.from_env().docker_host)
        found = containers.list_deployments(client)
    if as_json:
        print_json([_with_url(d) for d in found])
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
            f"{d.name:16} {d.model:16} {d.version:>4} {d.alias or '-':10} {d.state:9} "
            f"{d.health:10} {d.url or '-':22} {_age(containers.uptime(d)):>8}  {d.image}"
        )


@app.command("logs")
def logs(
    name: Annotated[str, typer.Argument(help="Deployment name")],
    follow: Annotated[bool, typer.Option("--follow", "-f")] = False,
    tail: Annotated[int, typer.Option("--tail", "-n")] = 100,
) -> None:
    """The serving container's log (`--follow` streams it)."""
    from backends import containers, docker_engine
    from console.config import Settings

    with backend_errors():
        client = docker_engine.connect(Settings.from_env().docker_host)
        try:
            for line in containers.deployment_logs(client, name, follow=follow, tail=tail):
                typer.echo(line)
        except KeyboardInterrupt:
            pass


@app.command("down")
def down(name: Annotated[str, typer.Argument(help="Deployment name")]) -> None:
    """Stop and remove a deployment (its containers drain before they stop)."""
    from backends import containers, docker_engine
    from console.config import Settings

    with backend_errors():
        client = docker_engine.connect(Settings.from_env().docker_host)
        removed = containers.remove_deployment(client, name)
        _refresh_targets(client)
    typer.echo(f"{name}: removed {', '.join(removed)}")


def _default_name(model: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_-]+", "-", model).strip("-")[:64] or "model"


def _with_url(d: Deployment) -> dict[str, object]:
    from console.cli.common import to_jsonable

    doc: dict[str, object] = to_jsonable(d)
    doc["url"] = d.url
    return doc


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m" if s < 172800 else f"{s // 86400}d"


def _record(
    settings: Settings, deployment: Deployment, action: str, replaced: str | None, reason: str
) -> None:
    """Put the deploy/rollback in the same history as the registry's alias moves."""
    from backends import deploy_history

    deploy_history.record(settings.tracking_uri, deployment, action, replaced, reason)


def _refresh_targets(client: object) -> None:
    """Keep Prometheus' file_sd targets in step with the deployments."""
    from backends import discovery

    try:
        discovery.refresh_from_docker(client)
    except OSError as exc:  # the deployment itself succeeded; monitoring config is secondary
        typer.echo(f"warning: could not update the Prometheus targets file: {exc}", err=True)
