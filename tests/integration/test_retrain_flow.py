"""The console's retraining (backends.lifecycle.retrain) against a real tracking server and a real
model server under shifted traffic: a gated challenger, and champion left where it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from backends.lifecycle.handles import Handles
from backends.lifecycle.retrain import retrain_challenger
from tests.integration.test_retrain import Serving, send, serving, versions, wait_psi

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
__all__ = ["serving"]  # the fixture, shared with test_retrain


def test_retraining_registers_a_gated_challenger_and_never_moves_champion(
    serving: Serving,
) -> None:
    from mlflow.tracking import MlflowClient

    champion = versions(serving)["champion"]
    send(serving.url, 3.0)
    wait_psi(serving.url, above=True)
    lines: list[str] = []
    outcome = retrain_challenger(
        Handles(serving.tracking_uri),
        serving.url,
        serving.data / "shifted.csv",
        fallback_project=ROOT / "examples" / "iris",
        deployment="iris-test",
        on_line=lines.append,
    )
    assert outcome.gate_passed, outcome.gate
    assert outcome.deployment == "iris-test" and outcome.model == serving.name
    assert outcome.served_run_id == serving.run_id
    # Judged by the thresholds in the serving run's own drift reference.
    assert "drift: petal_length PSI=" in outcome.drift and "(thresholds PSI>0.2" in outcome.drift
    assert outcome.challenger_score >= outcome.champion_score
    assert versions(serving) == {
        "champion": champion,
        "challenger": str(outcome.challenger_version),
    }
    assert lines[0].startswith(f"serving {serving.name} v{champion}")
    assert any(line.startswith("registered ") for line in lines)
    assert Path(outcome.log_path).is_file()
    client = MlflowClient(tracking_uri=serving.tracking_uri, registry_uri=serving.tracking_uri)
    run = client.get_run(outcome.run_id)
    assert run.data.tags["mlops.retrain.parent_run_id"] == serving.run_id
    assert run.data.params["data"].endswith("shifted.csv")
