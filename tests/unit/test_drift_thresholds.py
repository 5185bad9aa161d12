"""The thresholds drift is judged by come from the version's own drift reference, as the server
reads them; the defaults stand in, saying why, when there is none."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backends.errors import Unavailable
from backends.mlflow.drift_reference import reference_thresholds, thresholds_of
from tests.services import free_port


def test_thresholds_of_a_reference_document() -> None:
    doc = {"format": "mlops-drift-reference/1", "thresholds": {"psi": 0.3, "ks_pvalue": 0.01}}
    limits = thresholds_of(doc, "ref")
    assert (limits.psi, limits.ks_pvalue, limits.source) == (0.3, 0.01, "ref")
    unset = thresholds_of({"features": {}}, "ref")
    assert (unset.psi, unset.ks_pvalue, unset.source) == (0.2, 0.05, "ref")
    broken = thresholds_of({"thresholds": {"psi": "high"}}, "ref")
    assert broken.psi == 0.2 and broken.source == "default (ref has unreadable thresholds)"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A sqlite MLflow store: iris v1 with a reference (PSI 0.3), v2 without one."""
    from mlflow.tracking import MlflowClient

    root = tmp_path_factory.mktemp("thresholds")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.create_experiment("drift", artifact_location=str(root / "artifacts"))
    client.create_registered_model("iris")
    reference = root / "drift_reference.json"
    reference.write_text(json.dumps({"thresholds": {"psi": 0.3, "ks_pvalue": 0.01}}))
    with_reference = _run(client, experiment, reference)
    without = _run(client, experiment, None)
    for run_id in (with_reference, without):
        client.create_model_version("iris", f"runs:/{run_id}/model", run_id=run_id)
    return uri, with_reference


def _run(client: Any, experiment: str, reference: Path | None) -> str:
    run_id = str(client.create_run(experiment).info.run_id)
    if reference is not None:
        client.log_artifact(run_id, str(reference))
    client.set_terminated(run_id)
    return run_id


def test_a_versions_reference_sets_its_thresholds(registry: tuple[str, str]) -> None:
    uri, run_id = registry
    limits = reference_thresholds(uri, "iris", 1)
    assert (limits.psi, limits.ks_pvalue) == (0.3, 0.01)
    assert limits.source == f"drift_reference.json of run {run_id[:8]}"


def test_without_a_reference_the_defaults_say_why(registry: tuple[str, str]) -> None:
    uri, _ = registry
    no_reference = reference_thresholds(uri, "iris", 2)
    assert (no_reference.psi, no_reference.ks_pvalue) == (0.2, 0.05)
    assert no_reference.source.startswith("default (run ")
    assert "logged no drift_reference.json" in no_reference.source
    unknown = reference_thresholds(uri, "iris", 9)
    assert unknown.source == "default (iris v9 is not in the registry)"
    assert "does not name a registered version" in reference_thresholds(uri, "", None).source


def test_an_unreachable_tracking_server_is_unavailable_not_a_default() -> None:
    with pytest.raises(Unavailable):
        reference_thresholds(f"http://127.0.0.1:{free_port()}", "iris", 1)
