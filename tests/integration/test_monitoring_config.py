"""deploy/prometheus checked by Prometheus' own tool: config, rules, rule unit tests, and the
targets file the console writes (odd label values included)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backends.prometheus.discovery import target_groups, write_groups
from backends.records import ScrapeTarget
from console.cli.main import app
from tests import services
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

DEPLOY = ROOT / "deploy" / "prometheus"


def promtool(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        services.service_missing("promtool is not installed (apt-get install prometheus)")
    return subprocess.run([binary, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_rules_pass_promtool_check_rules() -> None:
    out = promtool("check", "rules", "rules.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 5 rules found" in out.stdout


def test_rules_behave_as_their_unit_tests_say() -> None:
    # rules_test.yml: each alert fires on synthetic series after its `for:`, and not before.
    out = promtool("test", "rules", "rules_test.yml")
    assert out.returncode == 0, out.stdout + out.stderr


def test_shipped_rules_name_the_five_alerts() -> None:
    import yaml

    rules = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"][0]["rules"]
    assert {r["alert"]: r["for"] for r in rules} == {
        "MlopsHighLatencyP99": "10m",
        "MlopsHighErrorRatio": "5m",
        "MlopsFeatureDrift": "30m",
        "MlopsTargetDown": "2m",
        "MlopsModelQualityLow": "30m",
    }
    assert all(r["labels"]["severity"] in ("warning", "critical") for r in rules)


def test_every_rule_says_what_happened_and_links_a_runbook_that_exists() -> None:
    import yaml

    rules = yaml.safe_load((DEPLOY / "rules.yml").read_text())["groups"][0]["rules"]
    for rule in rules:
        notes = rule["annotations"]
        assert notes["summary"].strip() and notes["description"].strip(), rule["alert"]
        url = notes["runbook_url"]
        assert url == f"docs/runbooks/{rule['alert']}.md", url
        runbook = ROOT / url
        assert runbook.is_file(), f"{rule['alert']}: {url} is missing"
        # A runbook opens with its alert's name and says what to do, not only what it means.
        text = runbook.read_text()
        assert text.startswith(f"# {rule['alert']}"), url
        assert "mlops " in text, f"{url} names no command to run"


def test_config_passes_promtool_check_config() -> None:
    out = promtool("check", "config", "prometheus.yml")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS: 1 rule files found" in out.stdout


def test_the_targets_file_we_write_is_valid_file_sd(tmp_path: Path) -> None:
    copy = tmp_path / "prometheus"
    shutil.copytree(DEPLOY, copy)
    targets = [
        ScrapeTarget("http://127.0.0.1:8081", "web", "iris", "3", "champion"),
        ScrapeTarget("http://[::1]:8082", "odd", 'we"ird\\model\nname', "1", ""),
    ]
    write_groups(target_groups(targets), copy / "targets" / "mlops.json")
    out = promtool("check", "config", "prometheus.yml", cwd=copy)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "does not exist" not in out.stdout  # promtool read and checked our file


@pytest.mark.docker
def test_mlops_monitor_targets_against_the_real_engine(docker_client: Any, tmp_path: Path) -> None:
    pytest.importorskip(
        "backends.docker.containers", reason="the containers backend is not here yet"
    )
    copy = tmp_path / "prometheus"
    shutil.copytree(DEPLOY, copy)
    path = copy / "targets" / "mlops.json"
    result = CliRunner().invoke(app, ["monitor", "targets", "--file", str(path), "--json"])
    assert result.exit_code == 0, result.output
    written = json.loads(result.output)
    groups = json.loads(path.read_text())
    assert len(groups) == len(written["targets"])
    for group in groups:
        assert set(group["labels"]) == {"model", "version", "alias", "deployment"}
    out = promtool("check", "config", "prometheus.yml", cwd=copy)
    assert out.returncode == 0, out.stdout + out.stderr
