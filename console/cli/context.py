"""`mlops context list|use|show`: the named contexts of ~/.config/mlops-console/config.toml.

Any command takes `--context NAME` (anywhere on the line) to run against that context once;
`mlops context use NAME` changes the file's current one. The environment overrides the file:
`show` says where each setting came from, and never prints a secret.
"""

from __future__ import annotations

from typing import Annotated

import typer

from console.cli.common import JsonOpt, backend_errors, print_json, table

app = typer.Typer(help="Named contexts (tracking, Docker, Prometheus, ...) in one config file.")

_SECRET_HINTS = ("TOKEN", "PASSWORD", "SECRET", "KEY")


@app.command("list")
def list_contexts(as_json: JsonOpt = False) -> None:
    """Every context in the config file; * marks the one in use."""
    from console.contexts import load_config

    with backend_errors():
        config = load_config()
    in_use = config.chosen()
    rows = []
    for name, ctx in sorted(config.contexts.items()):
        rows.append(
            {
                "name": name,
                "current": name == in_use,
                "tracking_uri": ctx.settings.get("tracking_uri", ""),
                "docker_host": ctx.settings.get("docker_host", ""),
                "prometheus_url": ctx.settings.get("prometheus_url", ""),
                "read_only": ctx.read_only,
            }
        )
    if as_json:
        print_json({"config": str(config.path), "current": in_use, "contexts": rows})
        return
    if not rows:
        typer.echo(f"no contexts in {config.path} (see README, Contexts); in use: {in_use}")
        return
    table(
        ["", "NAME", "TRACKING", "DOCKER", "PROMETHEUS", "READ-ONLY"],
        [
            [
                "*" if r["current"] else "",
                str(r["name"]),
                str(r["tracking_uri"]) or "-",
                str(r["docker_host"]) or "-",
                str(r["prometheus_url"]) or "-",
                "yes" if r["read_only"] else "no",
            ]
            for r in rows
        ],
        empty="",
    )


@app.command("use")
def use(name: Annotated[str, typer.Argument(help="A context of the config file.")]) -> None:
    """Make NAME the current context (written to the config file)."""
    from console.contexts import set_current

    with backend_errors():
        path = set_current(name)
    typer.echo(f"current context: {name} ({path})")
    from console.contexts import original_environment

    pinned = original_environment().get("MLOPS_CONTEXT")
    if pinned and pinned != name:
        typer.echo(f"note: MLOPS_CONTEXT={pinned} in the environment still wins", err=True)


@app.command("show")
def show(
    name: Annotated[str | None, typer.Argument(help="A context (default: the one in use).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The settings a command would use under the context, each with where it came from."""
    from console.contexts import SETTING_VARIABLES, load_config, original_environment

    with backend_errors():
        config = load_config()
        chosen = config.chosen(name)
        ctx = config.get(chosen)
    env = original_environment()
    from_context = ctx.variables(env)
    settings = []
    for key, variable in SETTING_VARIABLES.items():
        if variable in env:
            value, source = env[variable], "environment"
        elif variable in from_context:
            value, source = from_context[variable], f"context {chosen}"
        else:
            value, source = "", "default"
        settings.append({"setting": key, "variable": variable, "value": value, "source": source})
    credentials = [
        {
            "variable": target,
            "from": f"${source}",
            "set": bool(env.get(target) or env.get(source)),
            "source": "environment" if target in env else f"context {chosen}",
        }
        for target, source in sorted(ctx.credentials.items())
    ]
    # MLflow's own credential variables set in the environment directly (not through the file).
    listed = {c["variable"] for c in credentials}
    for variable in sorted(env):
        secret = variable.startswith("MLFLOW_TRACKING_") and variable.endswith(_SECRET_HINTS)
        if secret and variable not in listed:
            credentials.append(
                {"variable": variable, "from": "environment", "set": True, "source": "environment"}
            )
    doc = {
        "context": chosen,
        "config": str(config.path),
        "defined": ctx.defined,
        "read_only": ctx.read_only or env.get("MLOPS_READ_ONLY", "").lower() in ("1", "true"),
        "settings": settings,
        "credentials": credentials,
    }
    if as_json:
        print_json(doc)
        return
    where = str(config.path) if ctx.defined else "not in the config file: defaults"
    typer.echo(f"context {chosen} ({where})")
    table(
        ["SETTING", "VARIABLE", "VALUE", "FROM"],
        [[s["setting"], s["variable"], s["value"] or "-", s["source"]] for s in settings],
        empty="",
    )
    for c in credentials:
        state = "set" if c["set"] else "NOT SET"
        typer.echo(f"credential {c['variable']}: {c['from']} ({state})")
