"""`mlops monitor`: routing, output, exit codes (sources faked or refused; no services)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backends.errors import Unavailable
from backends.prometheus.queries import Scope
from backends.records import (
    Alert,
    Deployment,
    DeploymentHealth,
    FeatureDrift,
    LatencySummary,
    MonitorSnapshot,
)
from console.cli import monitor as monitor_cli
from console.cli.exit_codes import ExitCode
from console.cli.main import app
from tests.services import free_port

runner = CliRunner()
AT = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)
DRIFT_ALERT = Alert(
    name="MlopsFeatureDrift",
    state="firing",
    severity="warning",
    labels={"deployment": "web", "model": "iris", "feature": "petal_length", "severity": "warning"},
    active_since=AT,
)


def health(**over: Any) -> DeploymentHealth:
    fields: dict[str, Any] = {
        "deployment": "web",
        "model": "iris",
        "version": "3",
        "alias": "champion",
        "instance": "127.0.0.1:8081",
        "up": True,
        "requests_total": 1000.0,
        "request_rate": 12.5,
        "error_ratio": 0.02,
        "client_error_ratio": 0.0,
        "latency": LatencySummary(0.002, 0.008, 0.0123),
        "batch_size_mean": 3.0,
        "drift": (
            FeatureDrift("petal_length", 0.61, 0.4, 0.0001, True),
            FeatureDrift("sepal_width", 0.02, 0.05, 0.7, False),
        ),
        "drift_window_rows": 1000.0,
        "alerts": (DRIFT_ALERT,),
    }
    fields.update(over)
    return DeploymentHealth(**fields)


def snapshot(
    rows: tuple[DeploymentHealth, ...], alerts: tuple[Alert, ...] | None
) -> MonitorSnapshot:
    source = "prometheus http://prom:9090" if alerts is not None else "direct scrape"
    return MonitorSnapshot(source=source, window_seconds=60, taken_at=AT, rows=rows, alerts=alerts)


class FakeSource:
    def __init__(self, *answers: MonitorSnapshot | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[Scope | None, str]] = []
        self.closed = False

    @property
    def description(self) -> str:
        return "fake"

    def snapshot(self, scope: Scope | None = None, per: str = "deployment") -> MonitorSnapshot:
        self.calls.append((scope, per))
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def use_source(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(source: FakeSource) -> list[tuple[Any, ...]]:
        opened: list[tuple[Any, ...]] = []

        def fake_open(*args: Any) -> tuple[FakeSource, Scope]:
            opened.append(args)
            return source, Scope(deployment=args[0])

        monkeypatch.setattr(monitor_cli, "_open", fake_open)
        return opened

    return install


def test_help_lists_show_and_targets() -> None:
    result = runner.invoke(app, ["monitor", "--help"])
    assert result.exit_code == 0
    assert "show" in result.output and "targets" in result.output
    assert "mlops monitor [DEPLOYMENT]" in result.output


def test_a_deployment_name_is_not_mistaken_for_a_subcommand(use_source: Any) -> None:
    source = FakeSource(snapshot((health(),), (DRIFT_ALERT,)))
    opened = use_source(source)
    result = runner.invoke(app, ["monitor", "web", "--json"])
    assert result.exit_code == 0, result.output
    assert opened[0][0] == "web"
    assert source.calls == [(Scope(deployment="web"), "deployment")] and source.closed


def test_table_names_the_source_and_shows_every_number(use_source: Any) -> None:
    use_source(FakeSource(snapshot((health(),), (DRIFT_ALERT,))))
    result = runner.invoke(app, ["monitor"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "source: prometheus http://prom:9090 · window 1m" in out
    for text in ("web", "iris/3 @champion", "12.5", "2.0%", "2.0ms", "8.0ms", "12.3ms", "3.0"):
        assert text in out, text
    assert "petal_length 0.61 DRIFT" in out
    assert "1 firing" in out
    assert "FIRING   MlopsFeatureDrift" in out and "since 12:00:00 UTC" in out


def test_direct_scrape_says_so_and_that_alerts_need_prometheus(use_source: Any) -> None:
    down = health(deployment="api", up=False, error="http://h:2/metrics is unreachable", alerts=())
    use_source(FakeSource(snapshot((health(alerts=()), down), None)))
    result = runner.invoke(app, ["monitor"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    assert (
        "source: direct scrape" in result.output and "alert rules need Prometheus" in result.output
    )
    assert "n/a" in result.output and "DOWN" in result.output
    assert "api: http://h:2/metrics is unreachable" in result.output


def test_json_is_the_snapshot_with_stable_keys(use_source: Any) -> None:
    labelled = {"quality": {"accuracy": 0.9}, "labelled_rows": 50.0, "label_coverage": 0.5}
    use_source(FakeSource(snapshot((health(**labelled),), (DRIFT_ALERT,))))
    result = runner.invoke(app, ["monitor", "--json"])
    doc = json.loads(result.output)
    assert {k: doc["rows"][0][k] for k in labelled} == labelled
    assert doc["source"] == "prometheus http://prom:9090"
    row = doc["rows"][0]
    assert row["latency"] == {"p50": 0.002, "p95": 0.008, "p99": 0.0123}
    assert row["drift"][0] == {
        "feature": "petal_length",
        "psi": 0.61,
        "ks": 0.4,
        "ks_pvalue": 0.0001,
        "drifted": True,
    }
    assert doc["alerts"][0]["name"] == "MlopsFeatureDrift"


def test_an_unknown_deployment_exits_4(use_source: Any) -> None:
    use_source(FakeSource(snapshot((), ())))
    result = runner.invoke(app, ["monitor", "nope"])
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "no running deployment named 'nope'" in result.output


def test_an_unreachable_source_exits_3(use_source: Any) -> None:
    use_source(
        FakeSource(
            Unavailable("Prometheus at http://p is unreachable", title="Prometheus unreachable")
        )
    )
    result = runner.invoke(app, ["monitor"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "Prometheus unreachable" in result.output


def test_watch_keeps_going_through_a_failed_refresh(
    use_source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    fine = snapshot((health(),), (DRIFT_ALERT,))
    use_source(FakeSource(fine, Unavailable("gone", title="Prometheus unreachable"), fine))
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 2:
            raise KeyboardInterrupt  # the operator presses Ctrl-C

    monkeypatch.setattr(monitor_cli, "_sleep", sleep)
    result = runner.invoke(app, ["monitor", "--watch", "--interval", "0.5"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert (
        "refresh failed" in result.output
        and "Prometheus unreachable: gone (retrying)" in result.output
    )
    assert sleeps == [0.5, 0.5]


def test_watch_json_prints_one_document_per_refresh(
    use_source: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_source(FakeSource(snapshot((health(),), ())))
    calls = iter([None, KeyboardInterrupt()])

    def sleep(_: float) -> None:
        step = next(calls)
        if step is not None:
            raise step

    monkeypatch.setattr(monitor_cli, "_sleep", sleep)
    result = runner.invoke(app, ["monitor", "--watch", "--json"])
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert result.exit_code == 0 and len(lines) == 2 and lines[0]["rows"][0]["deployment"] == "web"


# --------------------------------------------------------------------------- real refusals


def test_target_that_does_not_answer_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    result = runner.invoke(app, ["monitor", "--target", f"127.0.0.1:{free_port()}"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert "unreachable" in result.output


def test_prometheus_that_does_not_answer_exits_3(monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("PROMETHEUS_URL", url)
    result = runner.invoke(app, ["monitor", "--json"])
    assert result.exit_code == ExitCode.UNREACHABLE
    assert f"Prometheus unreachable: Prometheus at {url} is unreachable" in result.output


def test_usage_errors_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    assert runner.invoke(app, ["monitor", "--window", "5x", "-t", "h:1"]).exit_code == 2
    result = runner.invoke(app, ["monitor", "--source", "prometheus"])
    assert result.exit_code == 2 and "PROMETHEUS_URL" in result.output


def test_targets_writes_the_file_from_the_deployments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import backends.lifecycle.targets

    web = Deployment(
        name="web",
        model="iris",
        version=3,
        alias="champion",
        run_id="r",
        image="i",
        container_id="c",
        state="running",
        health="healthy",
        host="127.0.0.1",
        port=8081,
        started_at=None,
    )

    class Engine:
        def close(self) -> None:
            pass

    engine = Engine()
    targets = backends.lifecycle.targets
    monkeypatch.setattr("backends.docker.engine.connect", lambda host: engine)
    monkeypatch.delenv("MLOPS_ENGINE", raising=False)
    monkeypatch.setattr(
        targets.containers, "list_deployments", lambda c: [web] if c is engine else []
    )
    monkeypatch.setattr(targets.containers, "canary_targets", lambda c: [])
    path = tmp_path / "targets.json"
    result = runner.invoke(app, ["monitor", "targets", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert f"wrote {path} (1 target)" in result.output and "127.0.0.1:8081" in result.output
    assert json.loads(path.read_text())[0]["labels"]["deployment"] == "web"
    again = runner.invoke(app, ["monitor", "targets", "--file", str(path), "--json"])
    assert json.loads(again.output)["changed"] is False


def test_targets_without_docker_exits_3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:

    def unreachable(host: str | None) -> object:
        raise Unavailable("Docker engine at unix:///x is not reachable", title="Docker unreachable")

    monkeypatch.setattr("backends.docker.engine.connect", unreachable)
    result = runner.invoke(app, ["monitor", "targets", "--file", str(tmp_path / "t.json")])
    assert result.exit_code == ExitCode.UNREACHABLE and "Docker unreachable" in result.output
    assert not (tmp_path / "t.json").exists()  # nothing written: the old list stays
