"""Which engines we connect to: an ssh:// engine is refused plainly, before docker-py's own
"install paramiko" (and before any address of a deployment assumes the engine is local)."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from backends.docker import engine
from backends.errors import InvalidInput


def test_an_ssh_engine_is_refused_saying_what_works() -> None:
    with pytest.raises(InvalidInput, match="ssh:// engines are not supported") as refused:
        engine.connect("ssh://ops@serve-1")
    assert "unix://" in refused.value.message


def test_the_cli_says_so_with_exit_2() -> None:
    from console.cli.main import app

    result = CliRunner().invoke(app, ["deploy", "ps"], env={"DOCKER_HOST": "ssh://ops@serve-1"})
    assert result.exit_code == 2, result.output
    assert "not supported" in result.output
