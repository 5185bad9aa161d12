"""The root command: help, version, exit codes."""

from __future__ import annotations

from typer.testing import CliRunner

from console import __version__
from console.cli.exit_codes import ExitCode
from console.cli.main import app

runner = CliRunner()


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "version" in result.output and "console" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"mlops-console {__version__}"
    assert __version__ != "0.0.0+unknown"  # the package is installed, metadata is real


def test_version_verbose_lists_backend_libraries() -> None:
    result = runner.invoke(app, ["version", "--verbose"])
    assert result.exit_code == 0
    assert "mlflow 3." in result.output


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["frobnicate"])
    assert result.exit_code == ExitCode.USAGE


def test_exit_codes_match_the_design() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 5]
