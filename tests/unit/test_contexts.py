"""Contexts (console.contexts, `mlops context`): the config file is checked and named in every
error, the environment wins over the file, a switch takes back exactly what the last context
set, a secret is read from the variable the file names and never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.errors import InvalidInput
from console import contexts
from console.cli.entry import context_first
from console.cli.main import app
from console.config import Settings

CONFIG = """\
# the operator's own comment stays
current_context = "staging"

[contexts.staging]
tracking_uri = "http://mlflow.staging:5000"
prometheus_url = "http://prom.staging:9090"
monitor_targets = ["http://10.0.0.5:8080", "local=http://127.0.0.1:8081"]
credentials = { MLFLOW_TRACKING_TOKEN = "STAGING_TOKEN" }

[contexts.prod]
tracking_uri = "https://mlflow.example.com"
docker_host = "ssh://ops@serve-1"
ca_cert = "/etc/ssl/mlflow-ca.pem"

[contexts.prod-replay]
tracking_uri = "http://replay:5000"
read_only = false
"""

COVERED = [*contexts.SETTING_VARIABLES.values(), "MLOPS_CONTEXT", "MLFLOW_TRACKING_TOKEN"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(CONFIG)
    monkeypatch.setenv("MLOPS_CONFIG", str(path))
    for variable in COVERED:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("STAGING_TOKEN", "s3cr3t-staging-token")
    # What an activation puts into os.environ, and its memory of it, go with the test
    # (tests/conftest.py restores both after every test).
    return path


def test_the_current_context_is_put_into_the_environment(config: Path) -> None:
    active = contexts.activate()
    assert active.context.name == "staging"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.staging:5000"
    assert os.environ["MLFLOW_TRACKING_TOKEN"] == "s3cr3t-staging-token"  # from $STAGING_TOKEN
    settings = Settings.from_env()
    assert settings.context == "staging" and not settings.read_only
    assert settings.prometheus_url == "http://prom.staging:9090"
    assert settings.monitor_targets == ("http://10.0.0.5:8080", "local=http://127.0.0.1:8081")


def test_the_environment_wins_over_the_file_and_the_choice_is_explicit_first(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mine:5000")
    monkeypatch.setenv("MLOPS_CONTEXT", "prod")
    active = contexts.activate()
    assert active.context.name == "prod"  # $MLOPS_CONTEXT over the file's current_context
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mine:5000"
    assert active.overridden == ("MLFLOW_TRACKING_URI",)
    assert os.environ["DOCKER_HOST"] == "ssh://ops@serve-1"
    assert os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] == "/etc/ssl/mlflow-ca.pem"
    assert contexts.activate("staging").context.name == "staging"  # --context over both


def test_a_switch_takes_back_what_the_last_context_set_and_nothing_else(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERTMANAGER_URL", "http://am:9093")  # the user's: stays throughout
    contexts.activate("prod")
    assert os.environ["DOCKER_HOST"] == "ssh://ops@serve-1"
    assert os.environ["MLOPS_READ_ONLY"] == "1"  # prod* is read-only by default
    contexts.activate("staging")
    assert "DOCKER_HOST" not in os.environ
    assert "MLFLOW_TRACKING_SERVER_CERT_PATH" not in os.environ
    assert "MLOPS_READ_ONLY" not in os.environ
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://mlflow.staging:5000"
    assert os.environ["ALERTMANAGER_URL"] == "http://am:9093"
    assert os.environ["MLOPS_CONTEXT"] == "staging"
    # A prod* context that says read_only = false is writable.
    contexts.activate("prod-replay")
    assert os.environ["MLOPS_READ_ONLY"] == "0" and not Settings.from_env().read_only


def test_without_a_file_a_name_is_a_label_over_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("MLOPS_READ_ONLY", raising=False)
    active = contexts.activate("prod")
    assert active.context.name == "prod" and not active.context.defined
    assert not active.context.read_only  # only a context the file defines defaults to it


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("current_context = 3\n", "current_context must be a string"),
        ("[contexts.a]\ntracking = 'x'\n", "unknown key 'tracking'"),
        ("[contexts.a]\nengine = 'kubernetes'\n", "engine must be one of docker, swarm"),
        ("[contexts.a]\nregistry = 'x'\n", "unknown key 'registry'"),
        ("[contexts.a]\nread_only = 'yes'\n", "read_only must be true or false"),
        ("[contexts.a]\nmonitor_targets = 'x'\n", "monitor_targets must be a list"),
        ("[contexts.a]\ntracking_uri = ''\n", "tracking_uri must be a non-empty string"),
        ("[contexts.a]\ncredentials = { MLFLOW_TRACKING_TOKEN = 'dapi-123abc!' }\n", "never the"),
        ("[contexts.a]\ncredentials = { MLFLOW_TRACKING_TOKEN = 'dapi123abc' }\n", "never the"),
        ("[contexts]\na = 1\n", "[contexts.a] must be a table"),
        ("colour = 'red'\n", "unknown top-level key 'colour'"),
        ("[contexts.a\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    with pytest.raises(InvalidInput) as caught:
        contexts.load_config(path)
    assert says in caught.value.message and str(path) in caught.value.message
    assert "dapi-123abc" not in caught.value.message  # a pasted secret is not echoed


def test_an_unknown_context_names_the_known_ones(config: Path) -> None:
    with pytest.raises(InvalidInput, match="contexts: prod, prod-replay, staging"):
        contexts.activate("qa")


def test_use_rewrites_only_the_current_context_line(config: Path) -> None:
    contexts.set_current("prod")
    text = config.read_text()
    assert 'current_context = "prod"' in text and "the operator's own comment" in text
    assert text.replace('"prod"', '"staging"', 1) == CONFIG
    assert contexts.load_config(config).current == "prod"
    with pytest.raises(InvalidInput):
        contexts.set_current("qa")
    assert contexts.load_config(config).current == "prod"  # a refused use changes nothing


def test_cli_list_use_and_show(config: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(app, ["context", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    doc = json.loads(listed.stdout)
    assert doc["current"] == "staging"
    assert {c["name"]: c["read_only"] for c in doc["contexts"]} == {
        "prod": True,
        "prod-replay": False,
        "staging": False,
    }
    shown = runner.invoke(app, ["--context", "prod", "context", "show", "--json"])
    assert shown.exit_code == 0, shown.output
    doc = json.loads(shown.stdout)
    by = {s["setting"]: s for s in doc["settings"]}
    assert doc["context"] == "prod" and doc["read_only"] is True
    assert by["docker_host"]["value"] == "ssh://ops@serve-1"
    assert by["docker_host"]["source"] == "context prod"
    assert by["prometheus_url"]["source"] == "default"
    staged = runner.invoke(app, ["context", "show", "staging"])
    assert staged.exit_code == 0, staged.output
    assert "MLFLOW_TRACKING_TOKEN: $STAGING_TOKEN (set)" in staged.stdout
    assert "s3cr3t" not in staged.stdout  # the secret is read, never printed
    used = runner.invoke(app, ["context", "use", "prod"])
    assert used.exit_code == 0 and "current context: prod" in used.stdout
    unknown = runner.invoke(app, ["--context", "qa", "context", "show"])
    assert unknown.exit_code == 2
    assert "no context 'qa'" in unknown.output


def test_context_may_come_anywhere_on_the_line() -> None:
    assert context_first(["models", "list", "--context", "prod"]) == [
        "--context",
        "prod",
        "models",
        "list",
    ]
    assert context_first(["deploy", "ps", "--context=prod"]) == ["--context=prod", "deploy", "ps"]
    # After `--` it belongs to whatever comes next (a training's own arguments).
    assert context_first(["train", "--", "--context", "x"]) == ["train", "--", "--context", "x"]


def test_the_installed_command_takes_context_after_the_verb(config: Path) -> None:
    mlops = Path(sys.executable).parent / "mlops"
    done = subprocess.run(
        [str(mlops), "context", "show", "--json", "--context", "prod"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLOPS_CONFIG": str(config)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["context"] == "prod"
    broken = config.with_name("broken.toml")
    broken.write_text("[contexts.a]\nfoo = 1\n")
    bad = subprocess.run(
        [str(mlops), "models", "list"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLOPS_CONFIG": str(broken)},
    )
    assert bad.returncode == 2
    assert "unknown key 'foo'" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_a_current_context_deleted_since_is_refused_when_used_and_can_be_mended(
    config: Path,
) -> None:
    config.write_text(CONFIG.replace('current_context = "staging"', 'current_context = "qa"'))
    with pytest.raises(
        InvalidInput, match=r"no context 'qa'.*contexts: prod, prod-replay, staging"
    ):
        contexts.activate()
    runner = CliRunner()
    refused = runner.invoke(app, ["models", "list"])
    assert refused.exit_code == 2 and "no context 'qa'" in refused.output
    listed = runner.invoke(app, ["context", "list"])  # still shows them, to mend it
    assert listed.exit_code == 0 and "staging" in listed.stdout
    mended = runner.invoke(app, ["context", "use", "staging"])
    assert mended.exit_code == 0, mended.output
    assert contexts.load_config(config).current == "staging"


def test_use_keeps_line_endings_and_a_symlink_and_refuses_what_it_cannot_rewrite(
    tmp_path: Path,
) -> None:
    real = tmp_path / "dotfiles" / "config.toml"
    real.parent.mkdir()
    real.write_bytes(CONFIG.replace("\n", "\r\n").encode("utf-8-sig"))
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    contexts.set_current("prod", link)
    assert link.is_symlink()
    text = real.read_bytes().decode("utf-8")
    assert 'current_context = "prod"\r\n' in text and "\n" not in text.replace("\r\n", "")
    # A key written as a quoted one, and a current_context look-alike inside a table.
    odd = tmp_path / "odd.toml"
    odd.write_text('"current_context" = "staging"\n[contexts.staging]\n[contexts.prod]\n')
    contexts.set_current("prod", odd)
    assert contexts.load_config(odd).current == "prod"
    inline = tmp_path / "inline.toml"
    inline.write_text('current_context = "staging"\n[contexts.staging]\n[contexts.prod]\n')
    contexts.set_current("prod", inline)
    assert inline.read_text().count("current_context") == 1


def test_credentials_are_not_sent_to_a_server_the_environment_chose(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://dev.local:5000")
    active = contexts.activate("staging")
    assert "MLFLOW_TRACKING_TOKEN" not in os.environ  # staging's token stays with staging
    assert "credentials are not sent" in active.warning()
    assert "MLFLOW_TRACKING_URI" in active.warning()


def test_a_contexts_engine_reaches_the_lifecycle_through_mlops_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.lifecycle.handles import Handles

    path = tmp_path / "config.toml"
    path.write_text("[contexts.cluster]\nengine = 'swarm'\nread_only = false\n")
    monkeypatch.setenv("MLOPS_CONFIG", str(path))
    monkeypatch.delenv("MLOPS_ENGINE", raising=False)
    assert Handles("sqlite:///x.db").engine == "docker"  # no context: one engine
    contexts.activate("cluster")
    assert Handles("sqlite:///x.db").engine == "swarm"
    monkeypatch.setenv("MLOPS_ENGINE", "k8s")
    with pytest.raises(InvalidInput, match="MLOPS_ENGINE='k8s' is not an engine"):
        Handles("sqlite:///x.db")
