"""Plan → show → apply from a real terminal, with a second operator moving the alias between
the plan shown and the "yes": the apply is refused (exit 5, naming who moved it) and nothing
else moves. The console's side of this is in tests/e2e (tmux)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backends.mlflow.registry import Registry
from tests import services
from tests.conftest import STORES, server_for
from tests.models import log_version
from tests.terminal import Terminal

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]


@pytest.fixture(scope="module", params=STORES)
def mlflow_server(request: pytest.FixtureRequest) -> services.MlflowServer:
    """This module runs against both stores: sqlite and a PostgreSQL-backed server."""
    return server_for(request.param)


MLOPS = str(Path(sys.executable).parent / "mlops")


@dataclass
class Model:
    uri: str
    name: str


@pytest.fixture(scope="module")
def model(
    mlflow_server: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Model]:
    """Three versions of a small model; champion at v1."""
    import mlflow

    name = f"plans-{uuid.uuid4().hex[:6]}"
    tmp = tmp_path_factory.mktemp("plans")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        mlflow.set_tracking_uri(mlflow_server.url)
        experiment = mlflow.MlflowClient(mlflow_server.url).create_experiment(name)
        for seed in (1, 2, 3):
            log_version(experiment, name, seed, False, tmp)
    Registry(mlflow_server.url, user="setup").promote(name, 1, reason="start")
    yield Model(mlflow_server.url, name)


def terminal(m: Model, *args: str, user: str = "alice") -> Terminal:
    env = services.env_with_venv_on_path(MLFLOW_TRACKING_URI=m.uri, MLOPS_USER=user)
    return Terminal([MLOPS, *args], env)


def champion(m: Model) -> int | None:
    return Registry(m.uri).alias_state(m.name, "champion").version


def test_a_promote_confirmed_after_someone_else_moved_the_alias_is_refused(model: Model) -> None:
    registry = Registry(model.uri, user="setup")
    registry.promote(model.name, 1, reason="reset")
    shell = terminal(model, "models", "promote", model.name, "2", "--reason", "alice's pick")
    shown = shell.wait_for("Apply this plan?")
    assert "from version 1" in shown and "to   version 2" in shown
    # Between the plan shown and the answer, bob promotes another version.
    Registry(model.uri, user="bob").promote(model.name, 3, reason="bob's pick")
    shell.type("y\n")
    code, out = shell.finish()
    assert code == 5, out
    assert "bob" in out and "nothing moved" in out
    assert champion(model) == 3  # bob's move stands; alice's never happened
    events = [e for e in Registry(model.uri).history(model.name, "champion") if e.who == "alice"]
    assert events == []


def test_a_plan_not_confirmed_changes_nothing(model: Model) -> None:
    Registry(model.uri, user="setup").promote(model.name, 1, reason="reset")
    shell = terminal(model, "models", "promote", model.name, "2")
    shell.wait_for("Apply this plan?")
    shell.type("n\n")
    code, out = shell.finish()
    assert code == 1 and "not confirmed; nothing changed" in out, out
    assert champion(model) == 1


def test_an_alias_rollback_confirmed_after_a_move_is_refused(model: Model) -> None:
    registry = Registry(model.uri, user="setup")
    registry.promote(model.name, 1, reason="reset")
    registry.promote(model.name, 2, reason="forward")
    shell = terminal(model, "models", "rollback", model.name)
    shown = shell.wait_for("Apply this plan?")
    assert "from version 2" in shown and "to   version 1" in shown
    Registry(model.uri, user="bob").promote(model.name, 3, reason="hotfix")
    shell.type("y\n")
    code, out = shell.finish()
    assert code == 5 and "bob" in out, out
    assert champion(model) == 3


def test_yes_applies_without_asking_and_a_script_is_never_asked(model: Model) -> None:
    Registry(model.uri, user="setup").promote(model.name, 1, reason="reset")
    shell = terminal(model, "models", "promote", model.name, "2", "--yes")
    code, out = shell.finish()
    assert code == 0 and "Apply this plan?" not in out and "1 -> 2" in out, out
    import subprocess

    env = services.env_with_venv_on_path(MLFLOW_TRACKING_URI=model.uri)
    piped = subprocess.run(  # stdin is not a terminal: a script, which is never asked
        [MLOPS, "models", "promote", model.name, "3"],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert piped.returncode == 0, piped.stderr
    assert "to   version 3" in piped.stderr and "Apply this plan?" not in piped.stderr
    assert champion(model) == 3
