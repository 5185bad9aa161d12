"""`mlops deploy canary`'s --source: where a release's figures come from, settled before any
backend is asked."""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import pytest
from typer.testing import CliRunner

from console.cli import canary as canary_cli
from console.cli.exit_codes import ExitCode
from console.cli.main import app

runner = CliRunner()
START = ["deploy", "canary", "web", "iris/3", "--check", "p99<1", "--yes", "--detach"]


class Asked(Exception):
    """Raised by the stand-in planner: what it was asked is all a test needs."""


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from backends.lifecycle import canary as releases

    seen: dict[str, Any] = {}

    def plan_release(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Asked

    monkeypatch.setattr(releases, "plan_release", plan_release)
    monkeypatch.setattr(canary_cli, "_handles", lambda: nullcontext(object()))
    return seen


@pytest.mark.parametrize(
    ("source", "url", "expected"),
    [
        ("auto", "http://prom:9090", "http://prom:9090"),
        ("auto", None, ""),
        ("prometheus", "http://prom:9090", "http://prom:9090"),
        ("scrape", "http://prom:9090", ""),
    ],
)
def test_the_figures_come_from_what_source_says(
    planned: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    source: str,
    url: str | None,
    expected: str,
) -> None:
    if url is None:
        monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    else:
        monkeypatch.setenv("PROMETHEUS_URL", url)
    result = runner.invoke(app, [*START, "--source", source])
    assert isinstance(result.exception, Asked), result.output
    assert planned["prometheus_url"] == expected


def test_source_prometheus_without_a_url_and_source_where_it_means_nothing_are_refused(
    planned: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    result = runner.invoke(app, [*START, "--source", "prometheus"])
    assert result.exit_code == ExitCode.USAGE and "PROMETHEUS_URL" in result.output
    watching = runner.invoke(app, ["deploy", "canary", "web", "--source", "scrape"])
    assert watching.exit_code == ExitCode.USAGE and "--source applies" in watching.output
    mirrored = runner.invoke(app, [*START[:4], "--mirror", "10", "--source", "scrape"])
    assert mirrored.exit_code == ExitCode.USAGE and "--source applies" in mirrored.output
    bogus = runner.invoke(app, [*START, "--source", "grafana"])
    assert bogus.exit_code == ExitCode.USAGE
    assert planned == {}  # nothing was planned
