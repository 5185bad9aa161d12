"""`--read-only` and MLOPS_READ_ONLY=1 refuse every mutating command (exit 2, saying why),
before any backend is asked; the console reads the same setting."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from console.cli.main import app
from console.config import Settings

MUTATING = [
    ["models", "register", "a" * 32, "--name", "iris"],
    ["models", "promote", "iris", "2"],
    ["models", "rollback", "iris"],
    ["deploy", "up", "iris@champion"],
    ["deploy", "rollback", "iris"],
    ["deploy", "down", "iris"],
    ["image", "build", "iris/2"],
    ["train"],
    ["retrain", "--target", "http://127.0.0.1:9", "--data", "x.csv"],
    ["quickstart", "--no-console"],
]
# Nothing listens there: a refusal must come before any attempt to reach it.
UNREACHABLE = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "DOCKER_HOST": "tcp://127.0.0.1:9"}


@pytest.mark.parametrize("args", MUTATING, ids=[" ".join(a[:2]) for a in MUTATING])
def test_read_only_refuses_every_mutating_command(args: list[str]) -> None:
    for invocation, env in (
        (["--read-only", *args], UNREACHABLE),
        (args, {**UNREACHABLE, "MLOPS_READ_ONLY": "1"}),
    ):
        result = CliRunner().invoke(app, invocation, env=env)
        assert result.exit_code == 2, (invocation, result.output)
        assert "read-only" in result.output and "refused" in result.output


def test_reading_is_allowed_and_the_console_reads_the_same_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    result = CliRunner().invoke(app, ["--read-only", "models", "list", "--help"])
    assert result.exit_code == 0
    monkeypatch.setenv("MLOPS_READ_ONLY", "1")
    assert Settings.from_env().read_only
    monkeypatch.setenv("MLOPS_READ_ONLY", "")
    assert not Settings.from_env().read_only
