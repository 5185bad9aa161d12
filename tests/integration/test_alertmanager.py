"""`mlops alerts` against a real Alertmanager (and Prometheus, for the read-only fallback and
for alerts that travel from a rule to Alertmanager). The Alertmanager is shared by the run: each
test posts alerts with a deployment label of its own and looks only at those groups."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from console.cli.main import app
from tests import services
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

AM_DIR = ROOT / "deploy" / "alertmanager"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("amtool")
    if binary is None:
        services.service_missing(
            "amtool is not installed (apt-get install prometheus-alertmanager)"
        )
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=AM_DIR, timeout=60)


def test_the_shipped_config_passes_amtool_check_config() -> None:
    out = amtool("check-config", "alertmanager.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["alertname=MlopsFeatureDrift", "severity=warning"], "mlops-retrain,team"),
        (["alertname=MlopsModelQualityLow", "severity=warning"], "mlops-retrain,team"),
        (["alertname=MlopsHighErrorRatio", "severity=critical"], "oncall"),
        (["alertname=MlopsHighLatencyP99", "severity=warning"], "team"),
        (["alertname=Other"], "team"),
    ],
)
def test_routes_send_drift_to_retraining_and_people_by_severity(
    labels: list[str], receivers: str
) -> None:
    out = amtool("config", "routes", "test", "--config.file=alertmanager.yml", *labels)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == receivers


def test_the_test_config_is_the_shipped_one_with_short_waits(tmp_path: Any) -> None:
    token = tmp_path / "token"
    token.write_text("secret\n")
    config = tmp_path / "am.yml"
    config.write_text(services.fast_alertmanager_config("http://127.0.0.1:1/hooks", token))
    out = amtool("check-config", str(config))
    assert out.returncode == 0, out.stdout + out.stderr


# --------------------------------------------------------------------------- helpers


def alert(deployment: str, name: str, severity: str = "warning", **labels: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": name,
            "severity": severity,
            "deployment": deployment,
            "model": "iris",
            **labels,
        },
        "annotations": {
            "summary": f"{name} on {deployment}",
            "runbook_url": f"docs/runbooks/{name}.md",
        },
        "startsAt": (datetime.now(UTC) - timedelta(minutes=3)).isoformat(),
        "generatorURL": "http://prometheus.invalid/graph",
    }


def cli(*args: str, env: dict[str, str]) -> Any:
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def groups_of(deployment: str, env: dict[str, str]) -> list[dict[str, Any]]:
    result = cli("alerts", "list", "--json", env=env)
    assert result.exit_code == 0, result.output
    return [
        g
        for g in json.loads(result.stdout)["groups"]
        if g["labels"].get("deployment") == deployment
    ]


def wait_for(check: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def am_env(alertmanager: services.AlertmanagerServer) -> dict[str, str]:
    return {"ALERTMANAGER_URL": alertmanager.url, "MLOPS_USER": "alice", "PROMETHEUS_URL": ""}


# --------------------------------------------------------------------------- Alertmanager


def test_list_ack_silence_expire(
    alertmanager: services.AlertmanagerServer, am_env: dict[str, str]
) -> None:
    web = f"web-{uuid.uuid4().hex[:6]}"
    alertmanager.post_alerts(
        [
            alert(web, "MlopsFeatureDrift", feature="petal_length"),
            alert(web, "MlopsFeatureDrift", feature="sepal_width"),
            alert(web, "MlopsHighLatencyP99"),
        ]
    )
    groups = wait_for(
        lambda: (
            (g := groups_of(web, am_env))
            and len(g) == 2
            and all(x["state"] == "active" for x in g)
            and g
        ),
        "two active groups",
    )
    drift = next(g for g in groups if g["labels"]["alertname"] == "MlopsFeatureDrift")
    assert drift["labels"] == {"alertname": "MlopsFeatureDrift", "deployment": web}
    assert len(drift["alerts"]) == 2
    assert "mlops-retrain" in drift["receiver"] and "team" in drift["receiver"]
    assert drift["alerts"][0]["annotations"]["runbook_url"] == "docs/runbooks/MlopsFeatureDrift.md"

    # The table: one row per alert, with the group id and the runbook.
    table = cli("alerts", "list", env=am_env).stdout
    assert drift["id"] in table and "docs/runbooks/MlopsFeatureDrift.md" in table

    # Acknowledge: a silence on exactly the group's labels, in the operator's name.
    acked = cli("alerts", "ack", drift["id"][:5], "--for", "20m", "--yes", "--json", env=am_env)
    assert acked.exit_code == 0, acked.output
    outcome = json.loads(acked.stdout)
    silence_id = outcome["silence"]
    plan = outcome["plan"]
    assert plan["acknowledges"] == drift["id"]
    assert {(m["name"], m["op"], m["value"]) for m in plan["matchers"]} == {
        ("alertname", "=", "MlopsFeatureDrift"),
        ("deployment", "=", web),
    }
    assert len(plan["matching"]) == 2
    assert "matches 2 alerts now" in acked.stderr  # the plan, shown before posting

    silenced = wait_for(
        lambda: next(
            (
                g
                for g in groups_of(web, am_env)
                if g["id"] == drift["id"] and g["state"] == "silenced"
            ),
            None,
        ),
        "the drift group silenced",
    )
    assert all(silence_id[:8] in a["quiet"] and "alice" in a["quiet"] for a in silenced["alerts"])
    silences = json.loads(cli("alerts", "list", "--silences", "--json", env=am_env).stdout)[
        "silences"
    ]
    mine = next(s for s in silences if s["id"] == silence_id)
    assert mine["created_by"] == "alice" and mine["state"] == "active"
    length = datetime.fromisoformat(mine["ends_at"]) - datetime.fromisoformat(mine["starts_at"])
    assert timedelta(minutes=19) < length <= timedelta(minutes=20, seconds=5)

    # A silence with matchers: the plan counts what they match now, before anything is posted.
    plan_only = subprocess.run(
        [
            services.VENV_BIN + "/mlops",
            "alerts",
            "silence",
            f'deployment="{web}"',
            'alertname=~"MlopsHigh.*"',
            "--for",
            "1h",
            "-c",
            "load test",
        ],
        input="n\n",
        capture_output=True,
        text=True,
        env=services.env_with_venv_on_path(**am_env),
        timeout=60,
    )
    # stdin is not a terminal: no question is asked, so it applies (the CLI's --yes rule).
    assert plan_only.returncode == 0, plan_only.stderr
    assert "matches 1 alert now" in plan_only.stderr and "MlopsHighLatencyP99" in plan_only.stderr

    # Expire the acknowledgement: the drift group notifies again.
    expired = cli("alerts", "expire", silence_id[:8], "--yes", env=am_env)
    assert expired.exit_code == 0, expired.output
    assert "2 alerts it quiets will notify again" in expired.stderr
    wait_for(
        lambda: any(
            g["id"] == drift["id"] and g["state"] == "active" for g in groups_of(web, am_env)
        ),
        "the drift group active again",
    )
    again = cli("alerts", "expire", silence_id, "--yes", env=am_env)
    assert again.exit_code == 2 and "already expired" in again.stderr


def test_an_inhibited_alert_says_by_what(
    alertmanager: services.AlertmanagerServer, am_env: dict[str, str]
) -> None:
    web = f"down-{uuid.uuid4().hex[:6]}"
    alertmanager.post_alerts(
        [alert(web, "MlopsTargetDown", "critical"), alert(web, "MlopsHighLatencyP99")]
    )
    group = wait_for(
        lambda: next(
            (
                g
                for g in groups_of(web, am_env)
                if g["labels"]["alertname"] == "MlopsHighLatencyP99" and g["state"] == "inhibited"
            ),
            None,
        ),
        "the latency warning inhibited by the target being down",
    )
    assert "inhibited by MlopsTargetDown" in group["alerts"][0]["quiet"]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["alerts", "silence", 'alertname=~".*"', "--yes"], 2, "also match alerts without"),
        (["alerts", "silence", "deployment", "--yes"], 2, "comes =, !=, =~ or !~"),
        (["alerts", "silence", 'x=~"(bad"', "--yes"], 2, "bad regex"),
        (["alerts", "silence", "deployment=web", "--for", "45d", "--yes"], 2, "at most 30 days"),
        (["alerts", "silence", "deployment=web", "--for", "soon", "--yes"], 2, ""),
        (["alerts", "ack", "zzzzzzzz", "--yes"], 4, "no alert group"),
        (["alerts", "expire", "no-such-silence", "--yes"], 4, "no silence"),
    ],
)
def test_bad_input_is_one_line_and_a_documented_exit_code(
    am_env: dict[str, str], args: list[str], code: int, says: str
) -> None:
    result = cli(*args, env=am_env)
    assert result.exit_code == code, result.output
    assert says in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_an_unreachable_alertmanager_is_exit_3_and_named() -> None:
    with services.CountingDeadEnd() as dead:
        result = cli("alerts", "list", env={"ALERTMANAGER_URL": dead.url})
    assert result.exit_code == 3
    assert "Alertmanager" in result.stderr and "unreachable" in result.stderr


def test_read_only_refuses_changes_before_contacting_anything() -> None:
    with services.CountingDeadEnd() as dead:
        env = {"ALERTMANAGER_URL": dead.url, "MLOPS_READ_ONLY": "1"}
        for args in (["ack", "abc"], ["silence", "a=b"], ["expire", "abc"]):
            result = cli("alerts", *args, env=env)
            assert result.exit_code == 2 and "read-only" in result.stderr
        assert dead.connections == 0


# --------------------------------------------------------------------------- Prometheus


def test_a_rule_alert_travels_from_prometheus_to_alertmanager(
    prometheus: services.PrometheusServer,
    alertmanager: services.AlertmanagerServer,
    am_env: dict[str, str],
) -> None:
    """A target that does not answer: the shipped MlopsTargetDown fires (for: 2 s here) and
    Prometheus sends it to the run's Alertmanager, where `mlops alerts list` shows it."""
    gone = f"gone-{uuid.uuid4().hex[:6]}"
    dead = services.free_port()
    prometheus.set_targets(
        [{"targets": [f"127.0.0.1:{dead}"], "labels": {"deployment": gone, "model": "iris"}}]
    )
    group = wait_for(
        lambda: next(
            (g for g in groups_of(gone, am_env) if g["labels"]["alertname"] == "MlopsTargetDown"),
            None,
        ),
        "MlopsTargetDown in Alertmanager",
        timeout=90,
    )
    first = group["alerts"][0]
    assert first["labels"]["severity"] == "critical"
    assert first["annotations"]["runbook_url"] == "docs/runbooks/MlopsTargetDown.md"
    assert "oncall" in group["receiver"]


def test_without_alertmanager_prometheus_alerts_show_read_only(
    prometheus: services.PrometheusServer,
) -> None:
    gone = f"ro-{uuid.uuid4().hex[:6]}"
    prometheus.set_targets(
        [{"targets": [f"127.0.0.1:{services.free_port()}"], "labels": {"deployment": gone}}]
    )
    env = {"ALERTMANAGER_URL": "", "PROMETHEUS_URL": prometheus.url}

    def firing() -> Any:
        result = cli("alerts", "list", "--json", env=env)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)
        return (
            doc
            if any(
                g["labels"].get("deployment") == gone and g["state"] == "firing"
                for g in doc["groups"]
            )
            else None
        )

    doc = wait_for(firing, "MlopsTargetDown firing in Prometheus", timeout=90)
    assert doc["read_only"] is True and "read-only" in doc["source"]
    group = next(g for g in doc["groups"] if g["labels"].get("deployment") == gone)
    assert group["labels"] == {"alertname": "MlopsTargetDown", "deployment": gone}
    assert group["alerts"][0]["annotations"]["summary"]
    refused = cli("alerts", "ack", group["id"], "--yes", env=env)
    assert refused.exit_code == 2 and "read-only" in refused.stderr


def test_with_neither_the_list_says_what_to_set() -> None:
    result = cli("alerts", "list", env={"ALERTMANAGER_URL": "", "PROMETHEUS_URL": ""})
    assert result.exit_code == 0
    assert "ALERTMANAGER_URL" in result.stdout and "no alerts" in result.stdout


def test_every_api_answer_we_read_is_alertmanagers_own(
    alertmanager: services.AlertmanagerServer,
) -> None:
    """The records are read from the v2 API's real shapes: status, groups, silences."""
    status = httpx.get(f"{alertmanager.url}/api/v2/status", timeout=10).json()
    assert status["versionInfo"]["version"]
    from backends.prometheus.alertmanager import Alertmanager

    view = Alertmanager(alertmanager.url).view()
    assert view.source == f"alertmanager {alertmanager.url}" and not view.read_only
