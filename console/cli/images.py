"""`mlops image ...`: build and list serving images (one model version baked in each)."""

from __future__ import annotations

from typing import Annotated

import typer

from console.cli.common import (
    JsonOpt,
    backend_errors,
    print_json,
    refuse_if_read_only,
    to_jsonable,
)
from console.cli.progress import Steps, build_log

app = typer.Typer(
    help="Serving images: build one per model version, push it to a registry, list them.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@app.command("build")
def build(
    model_ref: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    tag: Annotated[
        str | None, typer.Option("--tag", help="Image tag (default mlops/NAME:vN-RUN).")
    ] = None,
    base_image: Annotated[
        str | None,
        typer.Option(
            "--base-image",
            help="Base image (default: mlops-base:bookworm if built, else python:3.11-slim).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the serving image for one model version (cached when nothing changed)."""
    refuse_if_read_only("image build")
    from backends.lifecycle.build import build as build_image
    from backends.lifecycle.handles import Handles
    from console.config import Settings

    settings = Settings.from_env()
    with (
        backend_errors(),
        Handles(settings.tracking_uri, settings.docker_host) as h,
        Steps(silent=quiet) as steps,  # on stderr: with --json too, stdout stays the document
    ):
        outcome = build_image(h, model_ref, tag=tag, base_image=base_image, on_log=build_log(steps))
    image = outcome.image
    if as_json:
        print_json(image)
    else:
        cached = ", unchanged: every step from cache" if outcome.cached else ""
        typer.echo(
            f"built {', '.join(image.tags) or image.id} ({image.model} v{image.version}, "
            f"{image.size_bytes / 1e6:.0f} MB{cached})"
        )


@app.command("push")
def push(
    model_ref: Annotated[str, typer.Argument(help="NAME@ALIAS or NAME/VERSION")],
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry",
            help="host[:port] (default: the context's image_registry, $MLOPS_IMAGE_REGISTRY).",
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print only the result.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Push a version's serving image to an image registry (built first if missing); prints
    the image there by tag and by digest (what a swarm service runs)."""
    refuse_if_read_only("image push")
    from backends.errors import InvalidInput
    from backends.lifecycle.build import push as push_image
    from backends.lifecycle.handles import Handles
    from backends.lifecycle.placement import image_registry
    from console.config import Settings

    settings = Settings.from_env()
    with backend_errors():
        target = registry or image_registry()
        if not target:
            raise InvalidInput(
                "no image registry: give --registry host:port, or image_registry in the "
                "context (MLOPS_IMAGE_REGISTRY)"
            )
        with (
            Handles(settings.tracking_uri, settings.docker_host) as h,
            Steps(silent=quiet) as steps,
        ):
            pushed, built = push_image(h, model_ref, target, on_log=build_log(steps))
    if as_json:
        print_json({**to_jsonable(pushed), "pinned": pushed.pinned, "built": built})
    else:
        typer.echo(f"pushed {pushed.tag} ({pushed.model} v{pushed.version}): {pushed.pinned}")


@app.command("list")
def list_images(as_json: JsonOpt = False) -> None:
    """Our serving images: model, version, size, created."""
    from backends.docker import engine as docker_engine
    from backends.docker import images
    from console import format as fmt
    from console.config import Settings

    with backend_errors():
        client = docker_engine.connect(Settings.from_env().docker_host)
        try:
            found = images.list_images(client)
        finally:
            client.close()
    if as_json:
        print_json(found)
        return
    if not found:
        typer.echo("no serving images yet (mlops image build NAME@ALIAS)")
        return
    typer.echo(f"{'TAG':32} {'MODEL':20} {'VERSION':>7} {'SIZE':>8}  CREATED")
    for i in found:
        created = i.created.strftime("%Y-%m-%d %H:%M") if i.created else "-"
        typer.echo(
            f"{(i.tags[0] if i.tags else i.id):32} {i.model:20} {fmt.version(i.version):>7} "
            f"{i.size_bytes / 1e6:>6.0f}MB  {created}"
        )
