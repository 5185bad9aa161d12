"""`mlops quickstart`: from nothing to a served model with latency, drift and an alert.

Trains two versions of the example model, registers both and promotes the better one through
the gate, serves it (in Docker when an engine and the local base image are there, else as a
local process), starts a Prometheus with the shipped rules, sending to an Alertmanager with the
shipped routes, when they are installed, and sends traffic with a drifted slice. Everything it
starts belongs to its own tracking store (one per working directory): its deployment is
``quickstart-<store>``, its processes are recorded in the store's state file
(``backends.lifecycle.background``), and ``stop`` ends exactly those.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from backends import shipped
from backends.defaults import CHAMPION
from backends.docker import containers, images, switch
from backends.errors import BackendError, Unavailable
from backends.lifecycle import background
from backends.lifecycle.build import image_for
from backends.lifecycle.handles import Handles
from backends.mlflow.models import store_id
from backends.mlflow.training import Training
from backends.prometheus.alertmanager_config import quick_config
from backends.prometheus.discovery import render_groups, target_groups
from backends.records import ModelVersion, ScrapeTarget

__all__ = ["DEMO_FOR", "MODEL", "QuickstartOutcome", "deployment_name", "run", "stop"]

MODEL = "iris"
FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
DEMO_FOR = "10s"  # the shipped rules wait minutes before firing; the demo wants it in a minute
# How often the demo's server recomputes drift and Prometheus scrapes and evaluates: with
# DEMO_FOR they bound when the drift alert fires after the drifted traffic (README).
DEMO_DRIFT_INTERVAL = "2"
DEMO_SCRAPE_INTERVAL = "2s"
DEMO_DRIFT_WINDOW = "300"
DEMO_GROUP_WAIT = "2s"  # Alertmanager's group_wait and group_interval for the demo
TRAININGS = ({"n_estimators": "3", "max_depth": "1"}, {"n_estimators": "100"})

Step = Callable[[str], object]


def deployment_name(store: str) -> str:
    """The quickstart deployment of one tracking store: another directory's is another one."""
    return f"quickstart-{store[:6]}"


@dataclass(frozen=True)
class QuickstartOutcome:
    """What the quickstart left running."""

    champion: ModelVersion
    url: str  # the model server (a deployment's router, or the local process)
    how: str  # "in Docker (deployment ...)" or "as a local process (pid ...)"
    deployment: str  # the deployment's name ("" when served as a local process)
    prometheus_url: str | None
    alertmanager_url: str | None
    sent: int
    failed: int


def run(h: Handles, project: Path, *, local: bool, on_step: Step) -> QuickstartOutcome:
    """Train, register, promote, serve, start Prometheus, and send drifted traffic."""
    store = store_id(h.tracking_uri)
    versions = []
    for step, params in enumerate(TRAININGS, start=1):
        on_step(f"[{step}/6] training {MODEL} with {params}")
        training = Training(project, h.tracking_uri, params=params, experiment=MODEL)
        training.start()
        for _ in training.lines():
            pass
        status = training.finish(training.wait())
        if status != "FINISHED" or training.run_id is None:
            raise BackendError(
                f"training failed (see {training.log_path})", title="Quickstart failed"
            )
        version = h.registry().register(training.run_id, MODEL)
        versions.append(version)
        on_step(
            f"      run {training.run_id}: accuracy {version.metrics.get('accuracy', 0):.3f}"
            f" -> {MODEL} v{version.version}"
        )
    best = max(versions, key=lambda v: v.metrics.get("accuracy", 0.0))
    on_step(
        f"[3/6] promoting {MODEL} v{best.version} to {CHAMPION} (gate: metrics, "
        "signature, load and predict, the project's policy on held-out rows)"
    )
    plan = h.registry().plan_promote(
        MODEL, best.version, alias=CHAMPION, requirements=["accuracy>=0.8"]
    )
    h.registry().apply_promote(plan, reason="quickstart")

    # Each "[N/6]" line comes before its work (a progress display times the step from it);
    # what the work found follows it, indented.
    on_step(f"[4/6] serving {MODEL}@{CHAMPION}")
    url, how, deployment = _serve(h, store, best, local, on_step)
    on_step(f"      {how} at {url}")
    target = ScrapeTarget(
        url=url,
        deployment=deployment or "quickstart",
        model=MODEL,
        version=best.version,
        alias=CHAMPION,
    )
    on_step("[5/6] metrics and alerts")
    alertmanager = None
    if shutil.which("prometheus") is not None:
        alertmanager = start_alertmanager(store, background.free_port(9093))
    prometheus = start_prometheus(
        store, target, background.free_port(9090), alertmanager.url if alertmanager else None
    )
    if prometheus is not None:
        on_step(
            f"      Prometheus at {prometheus.url} (the shipped alert rules, with "
            f"for: {DEMO_FOR} for the demo)"
        )
        if alertmanager is not None:
            on_step(
                f"      Alertmanager at {alertmanager.url} (the shipped routes, waits cut "
                f"to {DEMO_GROUP_WAIT}; no retraining webhook unless `mlops hooks serve` runs)"
            )
        else:
            on_step(
                "      no Alertmanager (apt-get install prometheus-alertmanager): alerts show "
                "read-only, nobody is notified"
            )
        wait_until_scraped(prometheus.url)
    else:
        on_step(
            "      no prometheus binary: the console scrapes the server directly "
            "(no alerts without Prometheus)"
        )
    on_step("[6/6] sending traffic: 150 clean rows, then 300 with petal_length shifted by +3 cm")
    ok, failed = send_traffic(url)
    on_step(f"      sent {ok + failed} requests ({failed} failed); a trickle keeps flowing")
    start_trickle(store, url)
    return QuickstartOutcome(
        best,
        url,
        how,
        deployment,
        prometheus.url if prometheus else None,
        alertmanager.url if alertmanager else None,
        ok + failed,
        failed,
    )


def _demo_env() -> dict[str, str]:
    return {"MLOPS_DRIFT_INTERVAL": DEMO_DRIFT_INTERVAL, "MLOPS_DRIFT_WINDOW": DEMO_DRIFT_WINDOW}


def _serve(
    h: Handles, store: str, champion: ModelVersion, local: bool, on_step: Step
) -> tuple[str, str, str]:
    """Serve the champion: a Docker deployment when possible, else a local process."""
    if not local:
        try:
            docker = h.docker()
            if images.default_base_image(docker) != images.PUBLIC_BASE:
                name = deployment_name(store)

                def step_line(line: str) -> None:
                    # Docker's steps, and the wheelhouse's one-time build (minutes, silent).
                    if line.startswith(("Step ", "building the offline wheelhouse")):
                        on_step(f"      {line}")

                image, _ = image_for(h, champion, step_line)
                port = background.free_port(8080)
                deployed, _ = switch.deploy(
                    docker, image, name, port=port, alias=CHAMPION, env=_demo_env()
                )
                how = f"in Docker (deployment {name!r})"
                return deployed.url or f"http://127.0.0.1:{port}", how, name
            on_step(
                "      Docker is there but no local base image "
                f"({shipped.path('scripts/build-base-image.sh')}): serving as a local process"
            )
        except Exception as exc:  # any Docker trouble: the local process still shows it all
            on_step(
                f"      Docker not usable ({str(exc).splitlines()[0][:100]}): "
                "serving as a local process"
            )
    port = background.free_port(8080)
    server = serve_locally(store, f"{MODEL}@{CHAMPION}", h.tracking_uri, port)
    return server.url, f"as a local process (pid {server.pid})", ""


def stop(h: Handles) -> list[str]:
    """End what this store's quickstart started: its processes, and its deployment."""
    store = store_id(h.tracking_uri)
    stopped = background.stop_all(store)
    with contextlib.suppress(BackendError):  # no Docker, or no quickstart deployment
        stopped += containers.remove_deployment(h.docker(), deployment_name(store))
    return stopped


def serve_locally(
    store: str, model_ref: str, tracking_uri: str, port: int
) -> background.Background:
    """`python -m server` in the background, recomputing drift often for the demo."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri}
    tree = shipped.source_tree()
    if tree is not None:  # a checkout: its server package, whatever the venv has installed
        env["PYTHONPATH"] = str(tree)
    env.update(_demo_env())
    cmd = [sys.executable, "-m", "server", "--model-uri", model_ref, "--port", str(port)]
    cmd += ["--log-level", "warning"]
    return background.spawn(store, "server", cmd, env, f"http://127.0.0.1:{port}", "/ready")


def alertmanager_binary() -> str | None:
    """Debian names it prometheus-alertmanager; upstream's tarball, alertmanager."""
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


def start_alertmanager(store: str, port: int) -> background.Background | None:
    """An Alertmanager with the shipped routes (short waits, no webhook), if installed."""
    binary = alertmanager_binary()
    if binary is None:
        return None
    root = background.state_dir(store) / "alertmanager"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    (root / "alertmanager.yml").write_text(quick_config(wait=DEMO_GROUP_WAIT, repeat="10m"))
    cmd = [
        binary,
        f"--config.file={root / 'alertmanager.yml'}",
        f"--storage.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",  # no gossip port: a second quickstart must not collide
    ]
    url = f"http://127.0.0.1:{port}"
    return background.spawn(store, "alertmanager", cmd, dict(os.environ), url, "/-/ready")


def start_prometheus(
    store: str, target: ScrapeTarget, port: int, alertmanager_url: str | None = None
) -> background.Background | None:
    """A Prometheus scraping ``target`` with the shipped rules (short `for:`), if installed,
    sending its alerts to ``alertmanager_url`` when there is one."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    root = background.state_dir(store) / "prometheus"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rules = shipped.path("deploy/prometheus/rules.yml").read_text()
    (root / "rules.yml").write_text(re.sub(r"(?m)^(\s+for:\s*)\S+", rf"\g<1>{DEMO_FOR}", rules))
    (root / "targets.json").write_text(render_groups(target_groups([target])))
    (root / "prometheus.yml").write_text(
        f"global:\n  scrape_interval: {DEMO_SCRAPE_INTERVAL}\n"
        f"  evaluation_interval: {DEMO_SCRAPE_INTERVAL}\n"
        "rule_files:\n  - rules.yml\n"
        "scrape_configs:\n  - job_name: mlops\n    file_sd_configs:\n"
        "      - files: ['targets.json']\n"
        + (
            "alerting:\n  alertmanagers:\n    - static_configs:\n"
            f"        - targets: ['{alertmanager_url.removeprefix('http://')}']\n"
            if alertmanager_url
            else ""
        )
    )
    cmd = [
        binary,
        f"--config.file={root / 'prometheus.yml'}",
        f"--storage.tsdb.path={root / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    return background.spawn(store, "prometheus", cmd, dict(os.environ), url, "/-/ready")


def send_traffic(url: str, clean: int = 150, drifted: int = 300) -> tuple[int, int]:
    """Clean iris rows, then a slice whose petal length moved: (answered, failed)."""
    from sklearn.datasets import load_iris

    frame = load_iris(as_frame=True).frame
    frame.columns = [*FEATURES, "target"]
    rows: list[list[Any]] = (
        frame[FEATURES].sample(clean, replace=True, random_state=0).values.tolist()
    )
    shifted = frame[FEATURES].sample(drifted, replace=True, random_state=1)
    rows += shifted.assign(petal_length=shifted.petal_length + 3.0).values.tolist()
    ok = failed = 0
    try:
        with httpx.Client(timeout=10) as http:
            for row in rows:
                r = http.post(f"{url}/predict", json={"data": [row]})
                ok, failed = (ok + 1, failed) if r.status_code == 200 else (ok, failed + 1)
    except httpx.HTTPError as exc:
        raise Unavailable(f"the model server at {url} stopped answering: {exc}") from exc
    return ok, failed


def wait_until_scraped(prometheus_url: str, timeout: float = 60) -> bool:
    """Wait for Prometheus' first scrape of the server, so the demo's traffic shows as rates."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = httpx.get(
                f"{prometheus_url}/api/v1/query", params={"query": "up"}, timeout=2
            ).json()["data"]["result"]
            if any(r["value"][1] == "1" for r in result):
                return True
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    return False


_TRICKLE = (
    "import sys, time, httpx\n"
    "url, pause = sys.argv[1], 1.0 / float(sys.argv[2])\n"
    "rows = [[5.9, 3.0, 8.1, 1.8], [5.1, 3.5, 4.4, 0.2], [6.7, 3.1, 7.4, 1.4]]\n"
    "with httpx.Client(timeout=10) as http:\n"
    "    i = 0\n"
    "    while True:\n"
    "        try:\n"
    "            http.post(url + '/predict', json={'data': [rows[i % 3]]})\n"
    "        except httpx.HTTPError:\n"
    "            time.sleep(1)\n"
    "        i += 1\n"
    "        time.sleep(pause)\n"
)


def start_trickle(store: str, url: str, per_second: float = 4.0) -> background.Background:
    """Keep a little drifted traffic flowing in the background, so the panes stay alive."""
    cmd = [sys.executable, "-c", _TRICKLE, url, str(per_second)]
    return background.spawn(store, "traffic", cmd, dict(os.environ), url, None)
