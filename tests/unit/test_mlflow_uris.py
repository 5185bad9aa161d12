"""Pointing MLflow at a server for one block leaves nothing behind for later subprocesses."""

from __future__ import annotations

import os

import pytest

from backends.mlflow.client import using_tracking_uri


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
        # The operator's own MLFLOW_REGISTRY_URI (a registry apart from the tracking server)
        # is kept; without one the registry is the tracking server.
        assert mlflow.get_registry_uri() == (preset or "http://127.0.0.1:5000")
    # Before the fix, the resolved default (sqlite:///mlflow.db in the working directory)
    # was written here and every model server started afterwards read the wrong registry.
    assert os.environ.get("MLFLOW_TRACKING_URI") == preset
    assert os.environ.get("MLFLOW_REGISTRY_URI") == preset


def test_threads_share_one_uri_and_the_last_one_out_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Console workers run gates and builds at once: one finishing must not pull MLflow's
    global URI from under another still resolving a ``models:/`` source through it."""
    import threading

    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    uri, other = "http://127.0.0.1:5000", "http://127.0.0.1:6000"
    inside, release, seen = threading.Event(), threading.Event(), []

    def long_user() -> None:
        with using_tracking_uri(uri):
            inside.set()
            release.wait(5)
            seen.append(("long", mlflow.get_tracking_uri()))

    def other_server() -> None:
        with using_tracking_uri(other):
            seen.append(("other", mlflow.get_tracking_uri()))

    worker = threading.Thread(target=long_user)
    worker.start()
    inside.wait(5)
    with using_tracking_uri(uri):  # a second user of the same server: no wait
        pass
    waiting = threading.Thread(target=other_server)
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive()  # another server waits for the first one's users
    release.set()
    worker.join(5)
    waiting.join(5)
    assert seen == [("long", uri), ("other", other)]
    assert "MLFLOW_TRACKING_URI" not in os.environ
