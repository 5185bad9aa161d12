"""`mlops quickstart --no-console` from an empty directory: trained, promoted, served, drifting."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.lifecycle.quickstart import deployment_name
from backends.mlflow.models import store_id
from tests import services

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.prometheus, pytest.mark.slow]


def mlops(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).parent / "mlops"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def prometheus_timing(prom: str, alert: str) -> tuple[float, float]:
    """The rule's ``for:`` and the evaluation interval, as the running Prometheus has them."""
    import yaml

    groups = httpx.get(f"{prom}/api/v1/rules").json()["data"]["groups"]
    (rule,) = [r for g in groups for r in g["rules"] if r.get("name") == alert]
    config = yaml.safe_load(httpx.get(f"{prom}/api/v1/status/config").json()["data"]["yaml"])
    interval = config["global"]["evaluation_interval"]
    return float(rule["duration"]), float(interval.removesuffix("s"))


def wait_until(condition: Callable[[], bool], what: str, hang_guard: float) -> None:
    """Until ``condition`` holds; the guard only stops a hung test, it measures nothing."""
    deadline = time.monotonic() + hang_guard
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within the {hang_guard:.0f} s hang guard")


def test_quickstart_end_to_end(tmp_path: Path, docker_client: object, base_image: str) -> None:
    env = services.env_with_venv_on_path(
        MLOPS_STATE_DIR=str(tmp_path / "state"), MLOPS_BASE_IMAGE=base_image
    )
    for var in ("MLFLOW_TRACKING_URI", "PROMETHEUS_URL", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(var, None)
    # --json: no console, the steps on stderr (plain lines: not a terminal), and on stdout
    # only the document of what it left running.
    run = mlops("quickstart", "--json", cwd=tmp_path, env=env)
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out, started = run.stderr, json.loads(run.stdout)
        tracking = f"sqlite:///{tmp_path}/mlflow.db"
        assert f"tracking store: {tracking}" in out and started["tracking_uri"] == tracking
        assert "[3/6] promoting iris v" in out
        name = deployment_name(store_id(tracking))
        assert "[4/6] serving iris@champion\n" in out
        assert f"in Docker (deployment {name!r}) at " in out
        assert "(0 failed)" in out
        assert (started["deployment"], started["failed"], started["sent"] > 0) == (name, 0, True)
        assert started["champion"]["name"] == "iris" and started["champion"]["version"] in (1, 2)
        url = started["url"]

        version = httpx.get(f"{url}/version").json()
        assert version["name"] == "iris" and version["alias"] == "champion"
        monitor = mlops("monitor", "--target", url, "--json", cwd=tmp_path, env=env)
        assert monitor.returncode == 0, monitor.stderr
        (row,) = json.loads(monitor.stdout)["rows"]
        drift = {f["feature"]: f for f in row["drift"]}
        assert drift["petal_length"]["drifted"] and drift["petal_length"]["psi"] > 0.2

        # The README's claim: the drift alert fires within about a minute of the drift. Measured
        # from when Prometheus first saw the gauge over the threshold, against the rule's `for:`
        # and the evaluation interval of the config the quickstart wrote (not a wall clock that
        # includes training on a slow box).
        prom = started["prometheus_url"]
        assert f"      Prometheus at {prom} " in out
        hold, every = prometheus_timing(prom, "MlopsFeatureDrift")

        def firing() -> list[dict[str, object]]:
            alerts = httpx.get(f"{prom}/api/v1/alerts").json()["data"]["alerts"]
            return [
                a
                for a in alerts
                if a["labels"]["alertname"] == "MlopsFeatureDrift" and a["state"] == "firing"
            ]

        def first_sample(expr: str) -> float:
            """When ``expr`` first had a value, by Prometheus' own clock (a range query)."""
            end = time.time()
            answer = httpx.get(
                f"{prom}/api/v1/query_range",
                params={"query": expr, "start": end - 900, "end": end, "step": "1s"},
            ).json()
            return min(float(v[0]) for series in answer["data"]["result"] for v in series["values"])

        wait_until(lambda: bool(firing()), "the drift alert fired", hang_guard=300)
        crossed = first_sample('mlops_feature_psi{feature="petal_length"} > 0.2')
        fired = first_sample('ALERTS{alertname="MlopsFeatureDrift", alertstate="firing"}')
        # `for:` once the rule sees it, plus a scrape and two evaluations either side.
        assert fired - crossed <= hold + 4 * every + 5, (fired - crossed, hold, every)
        assert fired - crossed <= 60  # the README's "within about a minute"
        assert firing()[0]["labels"]["feature"] == "petal_length"  # type: ignore[index]

        # And it reaches the Alertmanager the quickstart started, grouped per deployment, with
        # its runbook: what the console's Alerts screen and `mlops alerts` read.
        if shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"):
            am = started["alertmanager_url"]
            assert am and f"Alertmanager at {am} " in out

            found: list[dict[str, Any]] = []

            def in_alertmanager() -> bool:
                listed = mlops(
                    "alerts", "list", "--json", cwd=tmp_path, env={**env, "ALERTMANAGER_URL": am}
                )
                assert listed.returncode == 0, listed.stderr
                groups = json.loads(listed.stdout)["groups"]
                found[:] = [g for g in groups if g["labels"]["alertname"] == "MlopsFeatureDrift"]
                return bool(found)

            wait_until(in_alertmanager, "the drift alert in Alertmanager", hang_guard=120)
            (group,) = found
            assert group["labels"]["deployment"] == name
            assert group["alerts"][0]["annotations"]["runbook_url"].endswith("MlopsFeatureDrift.md")
        elif services.REQUIRE_SERVICES:
            pytest.fail("Alertmanager is not installed (apt-get install prometheus-alertmanager)")
    finally:
        stopped = mlops("quickstart", "--stop", cwd=tmp_path, env=env)
        assert "mlops-quickstart" in stopped.stdout, stopped.stdout + stopped.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
    os.sync()
