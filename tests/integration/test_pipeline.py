"""scripts/pipeline.sh end to end against a real tracking server (and Docker for the image)."""

from __future__ import annotations

import os
import re
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
            PARAMS="n_estimators=15",
            MLOPS_USER="pipeline",
            **{"MLOPS": str(bin_dir / "mlops"), **env},
        ),
    )


def test_pipeline_trains_gates_promotes_and_builds(
    mlflow_server: services.MlflowServer, docker_client: object, base_image: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from backends.docker.images import find_image
    from backends.mlflow.registry import Registry
    from tests.models import log_version

    model = f"iris-pipeline-{os.getpid()}"
    # A version before the pipeline's, and a champion that another shell moves back to it
    # just as the pipeline builds: the image must still be of the version the pipeline promoted.
    mlflow.set_tracking_uri(mlflow_server.url)
    experiment = MlflowClient(mlflow_server.url).create_experiment(model)
    log_version(experiment, model, 1, False, tmp_path)
    mover = tmp_path / "mlops"
    mover.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "$1 $2" = "image build" ]; then\n'
        f"  {sys.executable} -c 'from mlflow.tracking import MlflowClient; "
        f'MlflowClient().set_registered_model_alias("{model}", "champion", "1")\'\n'
        "fi\n"
        f'exec {Path(sys.executable).parent / "mlops"} "$@"\n'
    )
    mover.chmod(0o755)
    ok = run_pipeline(mlflow_server.url, model, MLOPS_BASE_IMAGE=base_image, MLOPS=str(mover))
    assert ok.returncode == 0, ok.stdout[-3000:] + ok.stderr[-3000:]
    for step in ("train", "register", "validate", "promote", "build the serving image", "done"):
        assert f"=== pipeline: {step}" in ok.stdout
    assert f"=== pipeline: build the serving image for {model} v2" in ok.stdout
    registry = Registry(mlflow_server.url)
    promoted, moved = registry.history(model, "champion")
    assert (promoted.action, promoted.who, promoted.to_version) == ("promote", "pipeline", 2)
    assert promoted.reason.startswith("pipeline ")
    assert (moved.action, moved.to_version) == ("manual", 1)  # the other shell's move
    # The gate judged v2 by the project's policy (gate.yaml travels with the run): its report
    # is on the run.
    v2_run = registry.version(model, 2).run_id
    logged = {a.path for a in MlflowClient(mlflow_server.url).list_artifacts(v2_run, "gate")}
    assert "gate/report.json" in logged, logged
    judged = re.search(r"^\s+PASS\s+policy\s+(?!not judged)", ok.stdout, re.MULTILINE)
    assert judged, ok.stdout[-3000:]
    image = find_image(docker_client, registry.version(model, 2))
    assert image is not None
    assert find_image(docker_client, registry.version(model, 1)) is None  # not the alias's
    docker_client.images.remove(image.id, force=True)  # type: ignore[attr-defined]
    assert registry.alias_state(model, "champion").version == 1

    # The gate stops the pipeline: nothing is promoted past an impossible requirement.
    blocked = run_pipeline(mlflow_server.url, model, REQUIRE="accuracy>=1.5", SKIP_IMAGE="1")
    assert blocked.returncode == 1
    assert "=== pipeline: promote" not in blocked.stdout
    assert registry.alias_state(model, "champion").version == 1
