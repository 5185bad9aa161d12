"""Pointing MLflow at a server for one block leaves nothing behind for later subprocesses."""

from __future__ import annotations

import os

import pytest

from backends.mlflow_client import using_tracking_uri


@pytest.mark.parametrize("preset", [None, "http://127.0.0.1:5999"])
def test_the_environment_is_restored_exactly(
    monkeypatch: pytest.MonkeyPatch, preset: str | None
) -> None:
    import mlflow

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        if preset is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, preset)
    mlflow.set_tracking_uri(preset)  # type: ignore[arg-type]
    with using_tracking_uri("http://127.0.0.1:5000"):
        assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
        assert mlflow.get_registry_uri() == "http://127.0.0.1:5000"
    # Before the fix, the resolved default (sqlite:///mlflow.db in the working directory)
    # was written here and every model server started afterwards read the wrong registry.
    assert os.environ.get("MLFLOW_TRACKING_URI") == preset
    assert os.environ.get("MLFLOW_REGISTRY_URI") == preset
