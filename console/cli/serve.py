"""`mlops serve MODEL_REF`: run the model server locally, without Docker."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer


def serve(
    model_ref: Annotated[
        str, typer.Argument(help="NAME@ALIAS, NAME/VERSION, models:/..., or a model directory")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    follow_alias: Annotated[
        bool, typer.Option("--follow-alias", help="Reload when the alias moves in the registry.")
    ] = False,
    max_batch_rows: Annotated[int | None, typer.Option(help="Largest micro-batch.")] = None,
    max_wait_ms: Annotated[
        float | None, typer.Option(help="Longest wait to fill a batch (default 0).")
    ] = None,
) -> None:
    """Serve a model with the mlops server (the same server the image runs)."""
    args = [
        sys.executable,
        "-m",
        "server",
        "--model-uri",
        model_ref,
        "--host",
        host,
        "--port",
        str(port),
    ]
    if follow_alias:
        args.append("--follow-alias")
    if max_batch_rows is not None:
        args += ["--max-batch-rows", str(max_batch_rows)]
    if max_wait_ms is not None:
        args += ["--max-wait-ms", str(max_wait_ms)]
    typer.echo(f"serving {model_ref} on http://{host}:{port} (Ctrl-C to stop)", err=True)
    # Replace this process: signals (Ctrl-C, SIGTERM) reach the server directly and it drains.
    os.execv(sys.executable, args)
