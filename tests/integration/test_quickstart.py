"""`mlops quickstart --no-console` from an empty directory: trained, promoted, served, drifting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

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


def test_quickstart_end_to_end(tmp_path: Path, docker_client: object, base_image: str) -> None:
    env = services.env_with_venv_on_path(
        MLOPS_STATE_DIR=str(tmp_path / "state"), MLOPS_BASE_IMAGE=base_image
    )
    for var in ("MLFLOW_TRACKING_URI", "PROMETHEUS_URL", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(var, None)
    started = time.monotonic()
    run = mlops("quickstart", "--no-console", cwd=tmp_path, env=env)
    try:
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        out = run.stdout
        assert f"tracking store: sqlite:///{tmp_path}/mlflow.db" in out
        assert "[3/6] promoting iris v" in out
        assert "[4/6] serving iris@champion in Docker (deployment 'quickstart')" in out
        assert "(0 failed)" in out
        url = out.split("watch it:   mlops monitor --target ")[1].split()[0]

        version = httpx.get(f"{url}/version").json()
        assert version["name"] == "iris" and version["alias"] == "champion"
        monitor = mlops("monitor", "--target", url, "--json", cwd=tmp_path, env=env)
        assert monitor.returncode == 0, monitor.stderr
        (row,) = json.loads(monitor.stdout)["rows"]
        drift = {f["feature"]: f for f in row["drift"]}
        assert drift["petal_length"]["drifted"] and drift["petal_length"]["psi"] > 0.2

        # Prometheus (started by the quickstart) fires the drift alert within a minute.
        prom = out.split("[5/6] Prometheus at ")[1].split()[0]
        deadline = started + 150
        firing: list[dict[str, object]] = []
        while time.monotonic() < deadline and not firing:
            alerts = httpx.get(f"{prom}/api/v1/alerts").json()["data"]["alerts"]
            firing = [
                a
                for a in alerts
                if a["labels"]["alertname"] == "MlopsFeatureDrift" and a["state"] == "firing"
            ]
            time.sleep(1)
        assert firing and firing[0]["labels"]["feature"] == "petal_length"  # type: ignore[index]
    finally:
        stopped = mlops("quickstart", "--stop", cwd=tmp_path, env=env)
        assert "mlops-quickstart" in stopped.stdout, stopped.stdout + stopped.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
    os.sync()
