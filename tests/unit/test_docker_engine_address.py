"""Which engine we connect to, chosen as the Docker CLI chooses it (DOCKER_HOST, then the Docker
context), ssh:// ones included (paramiko); where this host reaches what the engine's containers
listen on (its own loopback, or the engine host's address); and how one that does not answer is
said."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from backends.docker import engine
from backends.errors import InvalidInput, Unavailable


def test_an_ssh_engine_is_tried_and_its_failure_said() -> None:
    # paramiko is there (docker[ssh]); a host that is not there is named, with ssh's reason.
    with pytest.raises(Unavailable, match=r"ssh://ops@serve-1\.invalid is not reachable.*: "):
        engine.connect("ssh://ops@serve-1.invalid", timeout=5)


def test_the_cli_says_so_with_exit_3() -> None:
    from console.cli.main import app

    result = CliRunner().invoke(
        app, ["deploy", "ps"], env={"DOCKER_HOST": "ssh://ops@serve-1.invalid"}
    )
    assert result.exit_code == 3, result.output
    assert "not reachable" in result.output


def test_a_tcp_engine_on_another_host_is_tried_and_named_when_it_does_not_answer() -> None:
    # TEST-NET-1: never this machine, and nothing answers there.
    with pytest.raises(Unavailable, match=r"tcp://192\.0\.2\.10:2375 is not reachable"):
        engine.connect("tcp://192.0.2.10:2375", timeout=2)
    with pytest.raises(Unavailable, match=r"tcp://127\.0\.0\.1:9"):
        engine.connect("tcp://127.0.0.1:9", timeout=5)  # ours: tried, and nothing answers


@pytest.mark.parametrize(
    ("url", "reached_at"),
    [
        ("unix:///var/run/docker.sock", "127.0.0.1"),
        ("tcp://127.0.0.1:2375", "127.0.0.1"),
        ("tcp://localhost:2375", "127.0.0.1"),
        ("tcp://192.0.2.10:2376", "192.0.2.10"),
        ("tcp://[2001:db8::7]:2376", "2001:db8::7"),
    ],
)
def test_what_the_engines_containers_listen_on_is_reached_at_its_hosts_address(
    url: str, reached_at: str
) -> None:
    assert engine.reach_host(engine.EngineAddress(url)) == reached_at


def test_an_address_of_this_host_is_this_hosts_engine() -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("203.0.113.1", 9))  # no packet: picks the default route's address
        except OSError:
            pytest.skip("no default route here to find one of this host's addresses by")
        mine = s.getsockname()[0]
    assert engine.reach_host(engine.EngineAddress(f"tcp://{mine}:2375")) == "127.0.0.1"


def test_urls_on_the_engines_host() -> None:
    class Client:  # any object a client's address is remembered for
        pass

    here, far, far6 = Client(), Client(), Client()
    engine._REACH[far] = "192.0.2.10"
    engine._REACH[far6] = "2001:db8::7"
    assert engine.url_on(here, 8080) == "http://127.0.0.1:8080"
    assert not engine.is_remote(here)
    assert engine.url_on(far, 8080) == "http://192.0.2.10:8080" and engine.is_remote(far)
    assert engine.url_on(far6, "81") == "http://[2001:db8::7]:81"


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
    docker_context(config, "far", "ssh://ops@serve-1.invalid")
    return config


def test_the_docker_context_is_chosen_as_the_docker_cli_chooses_it(
    docker_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `docker context use elsewhere` (the CLI's config.json): that context's socket is tried.
    (docker_config / "config.json").write_text(json.dumps({"currentContext": "elsewhere"}))
    with pytest.raises(Unavailable, match=r"mlops-test\.sock \(Docker context 'elsewhere'\)"):
        engine.connect(timeout=5)
    # DOCKER_CONTEXT outranks it: an ssh:// context's engine, tried, named with the context.
    monkeypatch.setenv("DOCKER_CONTEXT", "far")
    with pytest.raises(Unavailable, match=r"ssh://ops@serve-1\.invalid \(Docker context 'far'\)"):
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


def test_an_ssh_alias_is_reached_at_the_host_name_its_ssh_config_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As docker-py's ssh transport reads ~/.ssh/config: an alias's HostName is the machine."""
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(
        "Host serve-1\n  HostName 192.0.2.44\n  User ops\n\nHost *\n  ServerAliveInterval 30\n"
    )
    monkeypatch.setenv("HOME", str(tmp_path))
    assert engine.reach_host(engine.EngineAddress("ssh://ops@serve-1")) == "192.0.2.44"
    assert engine.reach_host(engine.EngineAddress("ssh://192.0.2.45")) == "192.0.2.45"
    assert engine.reach_host(engine.EngineAddress("ssh://localhost")) == "127.0.0.1"
