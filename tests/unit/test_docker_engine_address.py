"""Which engine we connect to, chosen as the Docker CLI chooses it (DOCKER_HOST, then the Docker
context), and which we refuse: an ssh:// engine plainly, before docker-py's own
"install paramiko" (and before any address of a deployment assumes the engine is local)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.docker import engine
from backends.errors import InvalidInput, Unavailable


def test_an_ssh_engine_is_refused_saying_what_works() -> None:
    with pytest.raises(InvalidInput, match="ssh:// engines are not supported") as refused:
        engine.connect("ssh://ops@serve-1")
    assert "unix://" in refused.value.message


def test_the_cli_says_so_with_exit_2() -> None:
    from console.cli.main import app

    result = CliRunner().invoke(app, ["deploy", "ps"], env={"DOCKER_HOST": "ssh://ops@serve-1"})
    assert result.exit_code == 2, result.output
    assert "not supported" in result.output


def test_a_tcp_engine_on_another_host_is_refused_and_one_on_this_host_is_tried() -> None:
    with pytest.raises(InvalidInput, match="engines on another host are not supported"):
        engine.connect("tcp://192.0.2.10:2375")  # TEST-NET-1: never this machine
    with pytest.raises(Unavailable, match=r"tcp://127\.0\.0\.1:9"):
        engine.connect("tcp://127.0.0.1:9", timeout=5)  # ours: tried, and nothing answers


def docker_context(config: Path, name: str, host: str) -> None:
    """A context as `docker context create NAME --docker host=HOST` writes it."""
    meta = config / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    document = {"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}
    (meta / "meta.json").write_text(json.dumps(document))


@pytest.fixture
def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text("{}")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    docker_context(config, "elsewhere", "unix:///nonexistent/mlops-test.sock")
    docker_context(config, "far", "ssh://ops@serve-1")
    return config


def test_the_docker_context_is_chosen_as_the_docker_cli_chooses_it(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker context use elsewhere` (the CLI's config.json): that context's socket is tried.
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    with pytest.raises(Unavailable, match=r"mlops-test\.sock \(Docker context 'elsewhere'\)"):
        engine.connect(timeout=5)
    # DOCKER_CONTEXT outranks it, and an ssh:// context is refused naming the context.
    monkeypatch.setenv("DOCKER_CONTEXT", "far")
    with pytest.raises(InvalidInput, match=r"ssh://ops@serve-1 \(Docker context 'far'\)"):
        engine.connect(timeout=5)
    # DOCKER_HOST outranks both, as with the CLI.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/host.sock")
    with pytest.raises(Unavailable, match=r"host\.sock is not reachable"):
        engine.connect(timeout=5)


def test_an_unknown_docker_context_is_refused_with_exit_2(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from console.cli.main import app

    monkeypatch.setenv("DOCKER_CONTEXT", "nowhere")
    result = CliRunner().invoke(app, ["deploy", "ps"])
    assert result.exit_code == 2, result.output
    assert "Docker context 'nowhere' does not exist" in result.output


@pytest.mark.integration
def test_a_docker_context_on_this_hosts_engine_is_used(
    docker_config: Path, docker_client: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    socket_url = engine.DEFAULT_SOCKET
    docker_context(docker_config, "here", socket_url)
    monkeypatch.setenv("DOCKER_CONTEXT", "here")
    client = engine.connect(timeout=30)
    assert client.ping() is True
    assert engine.engine_address() == f"{socket_url} (Docker context 'here')"


def test_contexts_are_read_where_the_docker_cli_keeps_them(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No config.json under DOCKER_CONFIG (docker-py would then look elsewhere): still found.
    (docker_config / "config.json").unlink()
    monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
    assert engine.resolve().url == "unix:///nonexistent/mlops-test.sock"
    # A context whose TLS files the CLI stored beside it: used, verification as it says.
    docker_context(docker_config, "secure", "tcp://127.0.0.1:2376")
    digest = hashlib.sha256(b"secure").hexdigest()
    tls = docker_config / "contexts" / "tls" / digest / "docker"
    tls.mkdir(parents=True)
    (tls / "ca.pem").write_text("not read until a connection is made")
    monkeypatch.setenv("DOCKER_CONTEXT", "secure")
    found = engine.resolve()
    assert found.tls is not None and found.tls.ca_cert == str(tls / "ca.pem")
    # A context file that does not read is named, not a traceback (exit 2).
    meta = docker_config / "contexts" / "meta" / digest / "meta.json"
    meta.write_text("{not json")
    with pytest.raises(InvalidInput, match=r"'secure': .*meta\.json does not read"):
        engine.resolve()


def test_a_host_without_a_scheme_is_tcp_as_docker_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "127.0.0.1:9")
    assert engine.resolve().url == "tcp://127.0.0.1:9"
    with pytest.raises(Unavailable):  # this host's: tried, not refused as another host's
        engine.connect(timeout=5)
