"""`mlops hooks serve`: the receiver that turns Alertmanager's drift and quality alerts into
gated retrainings, each ending with a challenger that waits for a person.

The logic is ``backends.lifecycle.hooks`` (decisions) and ``backends.lifecycle.hooks_http``
(the routes); this module reads the options, keeps the token, and runs uvicorn.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from pathlib import Path
from typing import Annotated

import typer

from console.cli.common import fail, refuse_if_read_only
from console.cli.exit_codes import ExitCode

app = typer.Typer(
    help="Receivers for Alertmanager's webhook (retraining) and MLflow's registry webhooks.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

DEFAULT_PORT = 9095  # deploy/alertmanager/alertmanager.yml points here


def default_token_file() -> Path:
    state = os.environ.get("MLOPS_STATE_DIR") or os.environ.get("XDG_STATE_HOME")
    root = Path(state) if state else Path.home() / ".local" / "state"
    top = root if os.environ.get("MLOPS_STATE_DIR") else root / "mlops-console"
    return top / "hooks-token"


def read_or_create_token(path: Path) -> str:
    """The shared secret Alertmanager sends as its bearer token: made once, kept 0600."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    return token


@app.command()
def serve(
    data: Annotated[
        Path, typer.Option("--data", help="CSV a retraining trains on (features + target).")
    ],
    eval_data: Annotated[
        Path | None,
        typer.Option("--eval-data", help="Labelled CSV champion and challenger are scored on."),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PORT,
    token_file: Annotated[
        Path | None,
        typer.Option(help="Bearer token file (made if missing; default in the state dir)."),
    ] = None,
    targets: Annotated[
        Path | None,
        typer.Option(
            help="file_sd targets file naming deployments outside Docker "
            "(default: $MLOPS_TARGETS_FILE or the console's own)."
        ),
    ] = None,
    debounce: Annotated[
        float, typer.Option(help="Seconds in which a model's further alerts are dropped.")
    ] = 300.0,
    cooldown: Annotated[
        float, typer.Option(help="Seconds after a retraining before the model's next one.")
    ] = 3600.0,
    mlflow_secret_file: Annotated[
        Path | None,
        typer.Option(help="Secret of MLflow's registry webhook (enables /hooks/mlflow)."),
    ] = None,
) -> None:
    """Receive Alertmanager's webhook: a firing drift or quality alert for a deployment starts
    its gated retraining, one at a time per model, leaving a challenger for a person to
    approve (`mlops models approve`). Resolved alerts and unknown deployments start nothing."""
    refuse_if_read_only("hooks serve")
    if not data.is_file():
        fail(f"--data {data}: no such file", ExitCode.USAGE)
    if eval_data is not None and not eval_data.is_file():
        fail(f"--eval-data {eval_data}: no such file", ExitCode.USAGE)
    import uvicorn

    from backends.lifecycle import hook_actions, hooks, hooks_http
    from backends.prometheus.discovery import default_targets_path
    from console.config import Settings, default_project

    settings = Settings.from_env()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    token_path = token_file or default_token_file()
    token = read_or_create_token(token_path)
    by = f"hooks@{socket.gethostname()}"
    dispatcher = hooks.Dispatcher(
        resolve=hooks.deployment_lookup(
            hook_actions.docker_factory(settings.docker_host),
            targets or default_targets_path(),
        ),
        retrain=hook_actions.retrainer(
            settings.tracking_uri, settings.docker_host, data, eval_data, default_project()
        ),
        by=by,
        debounce=debounce,
        cooldown=cooldown,
    )
    mlflow_handler = None
    if mlflow_secret_file is not None:
        mlflow_handler = hook_actions.mlflow_handler(
            settings.tracking_uri, _secret(mlflow_secret_file)
        )
    typer.echo(f"hooks on http://{host}:{port}: POST /hooks/alertmanager, /hooks/mlflow")
    typer.echo(f"bearer token in {token_path} (Alertmanager's credentials_file)")
    uvicorn.run(
        hooks_http.hooks_app(dispatcher, token, mlflow_handler),
        host=host,
        port=port,
        log_level="warning",
    )


def _secret(path: Path) -> str:
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        fail(f"{path}: {exc.strerror}", ExitCode.USAGE)
    if not secret:
        fail(f"{path} is empty: put the webhook's secret in it", ExitCode.USAGE)
    return secret


@app.command("register-mlflow")
def register_mlflow(
    url: Annotated[
        str,
        typer.Option(help="Where the tracking server reaches `mlops hooks serve`'s /hooks/mlflow."),
    ],
    secret_file: Annotated[Path, typer.Option(help="The webhook's secret (serve's too).")],
    name: Annotated[str, typer.Option(help="The webhook's name in MLflow.")] = "mlops-console",
) -> None:
    """Register the receiver as the tracking server's webhook for alias events, so alias
    moves made outside the console enter the history when they happen. What the tracking
    server refuses is said in its own words (exit 2): an http URL unless the server allows it
    (MLFLOW_WEBHOOK_ALLOWED_SCHEMES), a loopback one unless MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS,
    a file store. Without the webhook, moves are detected the next time the history is read
    or an alias moves, as before."""
    refuse_if_read_only("hooks register-mlflow")
    from backends.mlflow import webhooks
    from backends.mlflow.client import connect
    from console.cli.common import backend_errors
    from console.config import Settings

    secret = _secret(secret_file)
    tracking = Settings.from_env().tracking_uri
    with backend_errors():
        client = connect(tracking)
        try:
            hook_id = webhooks.register(client, name, url, secret)
        except AttributeError:
            fail("this MLflow client has no webhooks (MLflow >= 3.3 needed)", ExitCode.UNREACHABLE)
    typer.echo(f"webhook {name} ({hook_id}): alias created/deleted -> {url}")
