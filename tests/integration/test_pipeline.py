"""scripts/pipeline.sh end to end against a real tracking server (and Docker for the image)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import services

pytestmark = [
    pytest.mark.integration,
    pytest.mark.mlflow_server,
    pytest.mark.docker,
    pytest.mark.slow,
]
ROOT = Path(__file__).resolve().parents[2]


def run_pipeline(tracking_uri: str, model: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "pipeline.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=services.env_with_venv_on_path(
            MLFLOW_TRACKING_URI=tracking_uri,
            MODEL=model,
            SKIP_TESTS="1",
            MLOPS=str(bin_dir / "mlops"),
            PARAMS="n_estimators=15",
            MLOPS_USER="pipeline",
            **env,
        ),
    )


def test_pipeline_trains_gates_promotes_and_builds(
    mlflow_server: services.MlflowServer, docker_client: object, base_image: str
) -> None:
    from backends.docker.images import find_image
    from backends.mlflow.registry import Registry

    model = f"iris-pipeline-{os.getpid()}"
    ok = run_pipeline(mlflow_server.url, model, MLOPS_BASE_IMAGE=base_image)
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    for step in ("train", "register", "validate", "promote", "build the serving image", "done"):
        assert f"=== pipeline: {step}" in ok.stdout
    registry = Registry(mlflow_server.url)
    assert registry.alias_state(model, "champion").version == 1
    (event,) = registry.history(model, "champion")
    assert (event.action, event.who) == ("promote", "pipeline")
    assert event.reason.startswith("pipeline ")
    image = find_image(docker_client, registry.version(model, 1))
    assert image is not None
    docker_client.images.remove(image.id, force=True)  # type: ignore[attr-defined]

    # The gate stops the pipeline: nothing is promoted past an impossible requirement.
    blocked = run_pipeline(mlflow_server.url, model, REQUIRE="accuracy>=1.5", SKIP_IMAGE="1")
    assert blocked.returncode == 1
    assert "=== pipeline: promote" not in blocked.stdout
    assert registry.alias_state(model, "champion").version == 1
