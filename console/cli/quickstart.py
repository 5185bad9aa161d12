"""`mlops quickstart`: from nothing to a served model with latency, drift and an alert on screen.

Trains two versions of the iris model, registers both and promotes one through the gate, serves
it (in Docker when an engine and a base image are there, else as a local process), starts a
Prometheus with the shipped rules when one is installed, sends traffic with a drifted slice, and
opens the console on the Monitor screen. `--stop` ends what an earlier quickstart started.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from console.cli.common import backend_errors

MODEL = "iris"
DEPLOYMENT = "quickstart"


def quickstart(
    no_console: Annotated[
        bool, typer.Option("--no-console", help="Do everything but open the console.")
    ] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Serve as a local process even if Docker is there.")
    ] = False,
    stop: Annotated[
        bool, typer.Option("--stop", help="Stop what an earlier quickstart started, and exit.")
    ] = False,
) -> None:
    """Train, register, promote, serve, send traffic with drift, and open the Monitor."""
    from backends import quickstart as qs
    from backends.records import ScrapeTarget
    from backends.registry import Registry
    from backends.training import Training, absolute_tracking_uri
    from console.cli.train import default_project
    from console.config import Settings

    settings = Settings.from_env()
    if stop:
        _stop(settings)
        return
    tracking = absolute_tracking_uri(settings.tracking_uri)
    typer.echo(f"tracking store: {tracking}")
    with backend_errors():
        versions = []
        for step, params in enumerate(
            ({"n_estimators": "3", "max_depth": "1"}, {"n_estimators": "100"}), start=1
        ):
            typer.echo(f"[{step}/6] training {MODEL} with {params}")
            training = Training(default_project(), tracking, params=params, experiment=MODEL)
            training.start()
            for _ in training.lines():
                pass
            status = training.finish(training.wait())
            if status != "FINISHED" or training.run_id is None:
                raise SystemExit(f"error: training failed (see {training.log_path})")
            version = Registry(tracking).register(training.run_id, MODEL)
            versions.append(version)
            typer.echo(
                f"      run {training.run_id}: accuracy {version.metrics.get('accuracy', 0):.3f}"
                f" -> {MODEL} v{version.version}"
            )
        best = max(versions, key=lambda v: v.metrics.get("accuracy", 0.0))
        typer.echo(
            f"[3/6] promoting {MODEL} v{best.version} to champion (gate: metrics, "
            "signature, load and predict)"
        )
        Registry(tracking).promote(
            MODEL,
            best.version,
            alias="champion",
            requirements=["accuracy>=0.8"],
            reason="quickstart",
        )

        url, how = _serve(settings, tracking, local)
        typer.echo(f"[4/6] serving {MODEL}@champion {how} at {url}")
        target = ScrapeTarget(
            url=url, deployment=DEPLOYMENT, model=MODEL, version=str(best.version), alias="champion"
        )
        prometheus = qs.start_prometheus(target, qs.free_port(9090))
        if prometheus is not None:
            typer.echo(
                f"[5/6] Prometheus at {prometheus.url} (the shipped alert rules, with "
                f"for: {qs.DEMO_FOR} for the demo)"
            )
        else:
            typer.echo(
                "[5/6] no prometheus binary: the console scrapes the server directly "
                "(no alerts without Prometheus)"
            )
        if prometheus is not None:
            qs.wait_until_scraped(prometheus.url)
        ok, failed = qs.send_traffic(url)
        typer.echo(
            f"[6/6] sent {ok + failed} requests ({failed} failed): 150 clean rows, then "
            "300 with petal_length shifted by +3 cm; a trickle keeps flowing"
        )
        qs.start_trickle(url)
    prom_url = prometheus.url if prometheus is not None else None
    typer.echo("")
    typer.echo(
        f"  watch it:   mlops monitor --target {url}"
        + (f"   (or PROMETHEUS_URL={prom_url} mlops monitor)" if prom_url else "")
    )
    typer.echo(f"  retrain:    mlops retrain --target {url} --if-drift --data NEW.csv")
    typer.echo("  stop it:    mlops quickstart --stop")
    if no_console:
        return
    from console.app import MlopsApp

    os.environ.setdefault("MLOPS_MONITOR_TARGETS", url)
    app_settings = Settings(
        tracking_uri=tracking,
        docker_host=settings.docker_host,
        prometheus_url=prom_url or settings.prometheus_url,
        context=settings.context,
    )
    MlopsApp(app_settings, start_mode="monitor").run()


def _serve(settings: object, tracking: str, local: bool) -> tuple[str, str]:
    """Serve the champion: a Docker deployment when possible, else a local process."""
    from backends import quickstart as qs

    if not local:
        try:
            from backends import containers, docker_engine, images

            client = docker_engine.connect(getattr(settings, "docker_host", None), timeout=10)
            if images.default_base_image(client) != images.PUBLIC_BASE:
                resolved = images.resolve_version(tracking, f"{MODEL}@champion")
                image = images.find_image(
                    client, MODEL, resolved.version, resolved.run_id
                ) or images.build_image(
                    client,
                    tracking,
                    resolved,
                    on_log=lambda line: (
                        typer.echo(f"      {line}") if line.startswith("Step ") else None
                    ),
                )
                port = qs.free_port(8080)
                containers.deploy(client, image, DEPLOYMENT, port=port, alias="champion")
                return f"http://127.0.0.1:{port}", f"in Docker (deployment {DEPLOYMENT!r})"
            typer.echo(
                "      Docker is there but no local base image "
                "(scripts/build-base-image.sh): serving as a local process"
            )
        except Exception as exc:  # any Docker trouble: the local process still shows it all
            typer.echo(
                f"      Docker not usable ({str(exc).splitlines()[0][:100]}): "
                "serving as a local process"
            )
    port = qs.free_port(8080)
    server = qs.serve_locally(f"{MODEL}@champion", tracking, port)
    return server.url, f"as a local process (pid {server.pid})"


def _stop(settings: object) -> None:
    from backends import quickstart as qs

    stopped = qs.stop_background()
    try:
        from backends import containers, docker_engine

        client = docker_engine.connect(getattr(settings, "docker_host", None), timeout=10)
        stopped += containers.remove_deployment(client, DEPLOYMENT)
    except Exception:
        pass  # no Docker, or no quickstart deployment: nothing more to stop
    typer.echo("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
