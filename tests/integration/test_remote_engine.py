"""A Docker engine on another host, reached over ``tcp://`` and ``ssh://`` (#21): a second dockerd
in a network namespace of its own (tests/second_node.py), whose loopback this host cannot
reach, with an sshd there; driven through `mlops deploy` with ``DOCKER_HOST=tcp://ADDRESS:PORT``,
``DOCKER_HOST=ssh://root@ADDRESS`` and a Docker context naming the latter.

Everything the console does there goes to the engine host's address: the readiness of its model
servers, the router's switches and rollback (its admin API answers remote clients with the
token only), the listing's URL, the scrape targets, a canary release's direct scrapes. A
deployment is switched and rolled back under steady load through its router with no failed
request; a router bound to that host's loopback is refused before anything runs; nothing of it
stays after `deploy down`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.lifecycle import build
from backends.lifecycle.handles import Handles
from tests import services
from tests.cli_load import Load, mlops, ok
from tests.models import log_rule_version
from tests.second_node import SecondNode, SshAccess, start_second_node, start_sshd
from tests.server.conftest import FEATURES, iris_frame

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.mlflow_server]

ENGINE_PORT = 2375


@dataclass
class Remote:
    node: SecondNode
    env: dict[str, str]  # what `mlops` runs with: the remote engine, the tracking server
    model: str
    versions: list[str]
    ssh: SshAccess


@pytest.fixture(scope="module")
def remote(
    mlflow_server: services.MlflowServer,
    docker_client: Any,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Remote]:
    """The other host's engine with two versions' serving images: built here and carried
    there as `docker save | docker load` (no registry is needed for one engine)."""
    import docker.errors
    import mlflow
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("remote-engine")
    environment = pytest.MonkeyPatch()
    environment.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"remote-{os.getpid()}"
    experiment = MlflowClient(mlflow_server.url).create_experiment(name)
    h = Handles(mlflow_server.url, docker=docker_client)
    numbers, refs = [], []
    try:
        for _ in range(2):
            version, _ = log_rule_version(experiment, name, "plain", tmp)
            numbers.append(version)
            refs.append(build.build(h, f"{name}/{version}", base_image=base_image).image.ref)
    finally:
        environment.undo()
    node = start_second_node(tmp, tcp_port=ENGINE_PORT)
    ssh: SshAccess | None = None
    try:
        ssh = start_sshd(node, tmp)
        services.remember_log("remote engine's dockerd", node.log)
        carried = subprocess.run(
            f"docker save {' '.join(refs)} | docker -H unix://{node.socket} load",
            shell=True,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert carried.returncode == 0, carried.stderr
        env = {
            "MLFLOW_TRACKING_URI": mlflow_server.url,
            "DOCKER_HOST": f"tcp://{node.address}:{ENGINE_PORT}",
            "MLOPS_STATE_DIR": str(tmp / "state"),
        }
        yield Remote(node, env, name, numbers, ssh)
    finally:
        if ssh is not None:
            ssh.stop()
        node.stop()
        for ref in refs:
            with contextlib.suppress(docker.errors.APIError):
                docker_client.images.remove(ref, force=True)


def _predict(url: str) -> httpx.Response:
    row = iris_frame()[FEATURES].values.tolist()[0]
    return httpx.post(f"{url}/predict", json={"data": [row]}, timeout=30)


def _up(env: dict[str, str], ref: str, name: str, *more: str) -> None:
    ok(mlops("deploy", "up", ref, "--name", name, "--yes", *more, env=env))


def _down(env: dict[str, str], name: str) -> None:
    """Take a test's deployment down whatever happened; a failure here is printed, not raised:
    it would hide the test's own."""
    done = mlops("deploy", "down", name, "--yes", env=env)
    if done.returncode != 0:
        print(f"deploy down {name}: exit {done.returncode}: {done.stderr[-500:]}")


def _containers_there(remote: Remote, **filters: str) -> list[Any]:
    """The containers on the other host's engine (asked on its own socket)."""
    client = remote.node.client()
    try:
        return list(client.containers.list(all=True, filters=filters))
    finally:
        client.close()


def _listens_here(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_a_deployment_on_another_hosts_engine_switches_and_rolls_back_under_load(
    remote: Remote,
) -> None:
    env, first, second = remote.env, *remote.versions
    port = 18000 + os.getpid() % 1000
    _up(env, f"{remote.model}/{first}", "far", "--port", str(port))
    try:
        listed = json.loads(ok(mlops("deploy", "ps", "--json", env=env)))
        far = next(d for d in listed if d["name"] == "far")
        # The router listens on every address of the engine's host, reached at that host's.
        url = f"http://{remote.node.address}:{port}"
        assert far["url"] == url and far["host"] == "0.0.0.0", far
        assert not _listens_here(port), "the router runs on the other host, not this one"
        answer = _predict(url)
        assert answer.status_code == 200, answer.text
        assert str(answer.json()["model"]["version"]) == first

        # Its admin API answers this host (it drives it from afar) only with the token.
        refused = httpx.get(f"{url}/-/router/state", timeout=10)
        assert refused.status_code in (401, 403), refused.text

        with Load(url) as load:
            load.wait_for(first)
            _up(env, f"{remote.model}/{second}", "far")
            load.wait_for(second)
            ok(mlops("deploy", "rollback", "far", "--yes", env=env))
            load.wait_for(first)
        assert load.failed() == [], load.failed()[:5]
        assert len(load.answers) > 100, len(load.answers)
        models = _containers_there(remote, label="org.mlops-console.role=model")
        assert [c.labels["org.mlops-console.version"] for c in models] == [first]
    finally:
        _down(env, "far")
    assert _containers_there(remote) == [], "a container of the deployment stayed"


def test_a_router_on_the_other_hosts_loopback_is_refused_before_anything_runs(
    remote: Remote,
) -> None:
    result = mlops(
        "deploy",
        "up",
        f"{remote.model}/{remote.versions[0]}",
        "--name",
        "near",
        "--host",
        "127.0.0.1",
        "--yes",
        env=remote.env,
    )
    assert result.returncode == 2, result.stderr
    assert "another host" in result.stderr and "--host 0.0.0.0" in result.stderr
    assert not [c for c in _containers_there(remote) if "near" in c.name]


def test_the_monitor_scrapes_it_at_the_other_hosts_address(remote: Remote, tmp_path: Path) -> None:
    """`mlops monitor targets` (what Prometheus' file discovery reads) names the engine host."""
    env = remote.env
    port = 19000 + os.getpid() % 1000
    _up(env, f"{remote.model}/{remote.versions[0]}", "seen", "--port", str(port))
    try:
        out = tmp_path / "targets.json"
        ok(mlops("monitor", "targets", "--file", str(out), env=env))
        groups = json.loads(out.read_text())
        found = [t for g in groups for t in g["targets"]]
        assert f"{remote.node.address}:{port}" in found, groups
        metrics = httpx.get(f"http://{remote.node.address}:{port}/metrics", timeout=10)
        assert metrics.status_code == 200 and "mlops_" in metrics.text
    finally:
        _down(env, "seen")


def test_an_ssh_engine_and_a_docker_context_of_it_deploy_and_switch_under_load(
    remote: Remote, tmp_path: Path
) -> None:
    """As an operator reaches an engine elsewhere: `DOCKER_HOST=ssh://root@HOST` (the key and
    the host's key in ~/.ssh, as the Docker CLI uses them), and `docker context create`."""
    env = {**remote.env, "DOCKER_HOST": remote.ssh.url, "HOME": str(remote.ssh.home)}
    port = 17000 + os.getpid() % 1000
    first, second = remote.versions
    _up(env, f"{remote.model}/{first}", "viassh", "--port", str(port))
    try:
        url = f"http://{remote.node.address}:{port}"
        with Load(url) as load:
            load.wait_for(first)
            _up(env, f"{remote.model}/{second}", "viassh")
            load.wait_for(second)
        assert load.failed() == [], load.failed()[:5]

        # The same engine as a Docker context (what `docker context create` writes).
        config = tmp_path / "docker-config"
        made = subprocess.run(
            ["docker", "context", "create", "far", "--docker", f"host={remote.ssh.url}"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "DOCKER_CONFIG": str(config)},
        )
        assert made.returncode == 0, made.stderr
        by_context = {**env, "DOCKER_CONFIG": str(config), "DOCKER_CONTEXT": "far"}
        del by_context["DOCKER_HOST"]
        listed = json.loads(ok(mlops("deploy", "ps", "--json", env=by_context)))
        assert [(d["name"], d["version"], d["url"]) for d in listed] == [
            ("viassh", int(second), url)
        ]
    finally:
        _down(env, "viassh")


def test_an_ssh_engine_whose_host_key_is_unknown_is_refused_saying_so(
    remote: Remote, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "config").write_text((remote.ssh.home / ".ssh" / "config").read_text())
    env = {**remote.env, "DOCKER_HOST": remote.ssh.url, "HOME": str(home)}
    result = mlops("deploy", "ps", env=env)
    assert result.returncode == 3, result.stderr
    assert "not found in known_hosts" in result.stderr, result.stderr


def test_a_canary_on_the_other_host_is_judged_on_its_direct_scrapes_and_promoted(
    remote: Remote, tmp_path: Path
) -> None:
    """The release reads both model servers' /metrics at the other host's address (no
    Prometheus: the direct scrape), under steady load, and promotes with no failed request."""
    env = {**remote.env, "MLOPS_STATE_DIR": str(tmp_path / "state")}
    services.remember_state_dir("canary state", tmp_path / "state" / "canary")
    port = 16000 + os.getpid() % 1000
    first, second = remote.versions
    _up(env, f"{remote.model}/{first}", "cy", "--port", str(port))
    try:
        with Load(f"http://{remote.node.address}:{port}") as load:
            load.wait_for(first)
            done = mlops(
                "deploy", "canary", "cy", f"{remote.model}/{second}", "--steps", "50,100",
                "--interval", "3s", "--check", "error_ratio<0.02", "--source", "scrape",
                "--yes", "--json", env=env, timeout=600,
            )  # fmt: skip
            load.wait_for(second)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outcome = json.loads(done.stdout)
        assert outcome["status"] == "promoted", outcome
        figures = outcome["history"][-1]["results"]
        assert figures and all(r["verdict"] == "pass" for r in figures), figures
        assert load.failed() == [], load.failed()[:5]
        models = _containers_there(remote, label="org.mlops-console.role=model")
        assert [c.labels["org.mlops-console.version"] for c in models] == [second]
        assert _containers_there(remote, label="org.mlops-console.role=canary") == []
    finally:
        _down(env, "cy")
