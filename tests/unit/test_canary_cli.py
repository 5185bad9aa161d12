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


# ------------------------------------------------------------------ following a release


def _keep(name: str, state: Any, command: str = "") -> None:
    """A release of deployment ``name`` in ``state``, written as the worker writes it."""
    from backends.lifecycle import canary as releases

    release = releases.Release(
        deployment=name, model="iris", stable_version=1, canary_version=2,
        canary_container="c", canary_port=1, image="i", alias="", follow_alias=False,
        sticky_header="", reason="", state=state, command=command,
    )  # fmt: skip
    releases.releases_dir().mkdir(parents=True, exist_ok=True)
    releases._save(release)


@pytest.fixture
def kept(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """Releases kept under a state directory of the test's own, each with a worker alive."""
    from backends.lifecycle import canary as releases

    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(releases.Release, "worker_alive", property(lambda self: True))


def _running() -> Any:
    from backends.canary import analysis

    return analysis.start(analysis.Plan.parse("20,100", "1s", 2, ["error_ratio<0.01"]))


@pytest.mark.usefixtures("kept")
def test_following_ends_when_the_release_pauses_for_a_person() -> None:
    """A scripted release that pauses must not wait with it for ever: exit 1, the release
    paused as it is, and the way on named."""
    import threading

    from backends.canary import analysis

    running = _running()
    _keep("web", running)
    paused, _ = analysis.pause_for(running, "inconclusive: 3 requests")
    later = threading.Timer(1.5, _keep, args=("web", paused))
    later.start()
    try:
        result = runner.invoke(app, ["deploy", "canary", "web", "--follow"])
    finally:
        later.cancel()
    assert result.exit_code == ExitCode.CHECK_FAILED, result.output
    assert "paused at 20 %: inconclusive: 3 requests" in result.output
    assert "waiting for a person: mlops deploy canary web --resume" in result.output
    as_json = runner.invoke(app, ["deploy", "canary", "web", "--follow", "--json"])
    assert as_json.exit_code == ExitCode.CHECK_FAILED
    assert '"status": "paused"' in as_json.stdout


@pytest.mark.usefixtures("kept")
def test_following_goes_on_while_a_persons_command_is_on_its_way() -> None:
    """Paused with a resume the worker has not carried out yet is not a pause to stop at."""
    import threading

    from backends.canary import analysis

    paused, _ = analysis.pause_for(_running(), "inconclusive")
    _keep("web", paused, command="promote")
    promoted, _ = analysis.promote(paused)
    later = threading.Timer(1.5, _keep, args=("web", promoted))
    later.start()
    try:
        result = runner.invoke(app, ["deploy", "canary", "web", "--follow", "--json"])
    finally:
        later.cancel()
    assert result.exit_code == ExitCode.OK, result.output
    assert '"status": "promoted"' in result.stdout


def test_following_ends_when_no_worker_drives_the_release(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """A worker gone (killed, the host rebooted): nothing will change, so the follower says
    so and ends (exit 1) instead of waiting for ever; the release stays where it was."""
    from backends.lifecycle import canary as releases

    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(releases.Release, "worker_alive", property(lambda self: False))
    _keep("web", _running())
    result = runner.invoke(app, ["deploy", "canary", "web", "--follow", "--json"])
    assert result.exit_code == ExitCode.CHECK_FAILED, result.output
    assert "no canary worker is running for web" in result.stderr
    assert "--resume` starts one" in result.stderr
    assert '"status": "running"' in result.stdout
    assert releases.read_release("web").state.status == "running"  # type: ignore[union-attr]


@pytest.mark.usefixtures("kept")
def test_following_ends_at_its_timeout_and_the_release_goes_on() -> None:
    """A CI job that waits at most so long: exit 1 at --timeout, saying where the release
    is and how to end it; the release itself is not touched."""
    import time

    from backends.lifecycle import canary as releases

    _keep("web", _running())
    started = time.monotonic()
    result = runner.invoke(app, ["deploy", "canary", "web", "--follow", "--timeout", "2s"])
    assert result.exit_code == ExitCode.CHECK_FAILED, result.output
    assert time.monotonic() - started >= 2
    assert "still running at 20 % after --timeout 2s; the analysis goes on" in result.stderr
    assert "end it: --abort or --promote" in result.stderr
    assert releases.read_release("web").state.status == "running"  # type: ignore[union-attr]
    as_json = runner.invoke(
        app, ["deploy", "canary", "web", "--follow", "--timeout", "1", "--json"]
    )
    assert as_json.exit_code == ExitCode.CHECK_FAILED
    assert '"status": "running"' in as_json.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["web", "iris/2", "--detach", "--timeout", "5m"], "--timeout limits following"),
        (["web", "--timeout", "5m"], "--timeout limits following"),
        (["web", "--abort", "--timeout", "5m"], "--timeout limits following"),
        (["web", "--follow", "--timeout", "soon"], "is not a positive duration"),
        (["web", "--follow", "--timeout", "0"], "is not a positive duration"),
        (["web", "--follow", "--timeout", "-5s"], "is not a positive duration"),
        (["web", "--follow", "--timeout", "\u00b2"], "is not a positive duration"),
        (["web", "--follow", "--timeout", "9" * 400], "is not a positive duration"),
        (["web", "--follow", "--timeout", "9" * 400 + "m"], "is not a positive duration"),
        (["web", "iris/2", "--mirror", "10", "--timeout", "5m"], "a shadow is not followed"),
        (["web", "--follow", "--detach"], "--detach returns at once, --follow watches"),
    ],
)
def test_a_timeout_where_nothing_is_followed_or_not_a_duration_is_refused(
    args: list[str], says: str
) -> None:
    result = runner.invoke(app, ["deploy", "canary", *args])
    assert result.exit_code == ExitCode.USAGE, result.output
    assert says in result.output


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("1.5", 1.5), (" 30s ", 30), ("1h30m", 5400), ("2m", 120)]
)
def test_a_timeout_is_seconds_or_a_duration_counted_from_the_commands_start(
    text: str, seconds: float
) -> None:
    import time

    before = time.monotonic()
    deadline = canary_cli._deadline(text)
    assert deadline is not None
    assert before + seconds <= deadline[0] <= time.monotonic() + seconds
    assert deadline[1] == text.strip()
