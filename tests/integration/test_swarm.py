"""Deployments on a real single-node Docker Swarm (`docker swarm init` on the test engine when it
is not in one), driven through `mlops deploy` with ``MLOPS_ENGINE=swarm``: a 3-replica
deployment switched three times and rolled back under steady load with no failed request, a
replica killed under load with no failed request (Swarm replaces it), `deploy scale`, `deploy ps`
showing replicas per version and their node, and a swarm context on an engine that is not a
manager refused with exit 3.

Images through a registry are pushed to Debian's `docker-registry` on loopback (a read-only one for
the refusal), and a swarm deploy with one runs its services by digest. A second node
(tests/second_node.py: a dockerd in a network namespace, joined as a worker) runs replicas beside
the manager's through a switch under load, and is then lost during the next switch. A canary
release on the swarm: promoted on Prometheus' figures (read through the router) under load, one
that never runs refused, one aborted under load; a shadow compared, then promoted under load.
Remote engines: test_remote_engine.py."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.docker import swarm
from backends.lifecycle import build
from backends.lifecycle.handles import Handles
from tests import services
from tests.cli_load import Load, mlops, ok
from tests.models import log_rule_version
from tests.second_node import dockerd_args
from tests.server.conftest import FEATURES, iris_frame
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.mlflow_server]


def _advertise_address() -> str:
    """This host's address on its default route (what `docker swarm init` would pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            # No packet is sent: this only picks a route. An address off any local subnet
            # (TEST-NET-3), so the default route's: a subnet's broadcast address (what this
            # asked before) is refused without SO_BROADCAST, and the swarm advertised loopback,
            # which no second node can reach.
            s.connect(("203.0.113.1", 9))
            return str(s.getsockname()[0])
        except OSError:
            return "127.0.0.1"


@pytest.fixture(scope="module")
def swarm_engine(docker_client: Any) -> Iterator[Any]:
    """The test engine as a swarm manager; a swarm this fixture made is left at the end."""
    import docker.errors

    made = False
    if docker_client.info().get("Swarm", {}).get("LocalNodeState") != "active":
        try:
            docker_client.swarm.init(advertise_addr=_advertise_address())
        except docker.errors.APIError as exc:
            services.service_missing(f"`docker swarm init` failed here: {exc.explanation}")
        made = True
    yield docker_client
    if made:
        docker_client.swarm.leave(force=True)


def _answers(socket_path: Path) -> bool:
    import docker

    try:
        client = docker.DockerClient(base_url=f"unix://{socket_path}", timeout=5)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


@dataclass
class Versions:
    tracking_uri: str
    name: str
    numbers: list[str]  # three versions of one model
    broken: str  # a version that fails to load where it is served


@pytest.fixture(scope="module")
def versions(
    mlflow_server: services.MlflowServer,
    swarm_engine: Any,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Versions]:
    import docker.errors
    import mlflow
    from mlflow.tracking import MlflowClient

    environment = pytest.MonkeyPatch()
    environment.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"swarm-{os.getpid()}"
    experiment = MlflowClient(mlflow_server.url).create_experiment(name)
    tmp = tmp_path_factory.mktemp("swarm-models")
    h = Handles(mlflow_server.url, docker=swarm_engine)
    numbers, images = [], []
    for behaviour in ("plain", "plain", "plain", "broken"):
        version, _ = log_rule_version(experiment, name, behaviour, tmp)
        numbers.append(version)
        images.append(build.build(h, f"{name}/{version}", base_image=base_image).image)
    yield Versions(mlflow_server.url, name, numbers[:3], numbers[3])
    environment.undo()
    for deployment in swarm.list_deployments(swarm_engine):
        if deployment.model == name:
            swarm.remove_deployment(swarm_engine, deployment.name)
    for image in images:
        # A container of a failed test may still hold one: the run goes on without it.
        with contextlib.suppress(docker.errors.APIError):
            swarm_engine.images.remove(image.id, force=True)


def test_three_switches_and_a_rollback_of_three_replicas_under_load_fail_nothing(
    versions: Versions, swarm_engine: Any, tmp_path: Path
) -> None:
    env = {"MLFLOW_TRACKING_URI": versions.tracking_uri, "MLOPS_ENGINE": "swarm"}
    name, (v1, v2, v3) = f"{versions.name}-roll", versions.numbers
    port = services.free_port()
    ref = versions.name
    ok(
        mlops(
            "deploy",
            "up",
            f"{ref}/{v1}",
            "--name",
            name,
            "--port",
            str(port),
            "--replicas",
            "3",
            "-y",
            "-q",
            env=env,
        )
    )
    rows = swarm.replicas(swarm_engine, name)
    assert [(r.version, r.running, r.desired, r.serving) for r in rows] == [(int(v1), 3, 3, True)]
    # Its services are limited as a single engine's containers are (read-only root, no
    # capability, memory and processes), and their health checks start no Python.
    made = swarm_engine.services.list(filters={"name": f"mlops-{name}"})
    assert len(made) == 2  # the router and v1's
    for service in made:
        task = service.attrs["Spec"]["TaskTemplate"]
        container = task["ContainerSpec"]
        assert container["ReadOnly"] is True and container["CapabilityDrop"] == ["ALL"]
        assert task["Resources"]["Limits"]["MemoryBytes"] > 0
        assert task["Resources"]["Limits"]["Pids"] == 512
        assert container.get("Healthcheck", {}).get("Test", ["CMD", "bash"])[1] == "bash"
    running = swarm_engine.containers.list(filters={"name": f"mlops-{name}-v"})
    assert running and all(c.attrs["HostConfig"]["PidsLimit"] == 512 for c in running)
    with Load(f"http://127.0.0.1:{port}") as load:
        load.wait_for(v1)
        monitored(name, port, versions, env, tmp_path)
        for version in (v2, v3, v1):
            ok(mlops("deploy", "up", f"{ref}/{version}", "--name", name, "-y", "-q", env=env))
            load.wait_for(version)
        out = ok(mlops("deploy", "rollback", name, "-y", env=env))
        load.wait_for(v3)
    counts = Counter(v for _, v in load.answers)
    print(f"{len(load.answers)} predictions through 3 switches and a rollback: {dict(counts)}")
    assert not load.failed(), Counter(load.failed()).most_common(5)
    assert f"v{v3}" in out
    # Each switch kept the replicas: the new version's service runs as many as the old did.
    rows = swarm.replicas(swarm_engine, name)
    assert [(r.version, r.running, r.desired) for r in rows] == [(int(v3), 3, 3)]
    ps = json.loads(ok(mlops("deploy", "ps", "--json", env=env)))
    mine = next(d for d in ps if d["name"] == name)
    assert mine["version"] == int(v3) and mine["health"] == "healthy"
    node = swarm_engine.info()["Name"]
    assert [(r["running"], r["desired"], r["nodes"]) for r in mine["replicas"]] == [
        (3, 3, [node, node, node])
    ]
    ok(mlops("deploy", "down", name, "-y", env=env))
    assert not [d for d in swarm.list_deployments(swarm_engine) if d.name == name]
    # Nothing of it is left: no network, no volume (its token and routing table).
    assert not [n for n in swarm_engine.networks.list() if n.name == f"mlops-{name}"]
    assert not [v for v in swarm_engine.volumes.list() if v.name == f"mlops-{name}-state"]


def monitored(name: str, port: int, versions: Versions, env: dict[str, str], tmp: Path) -> None:
    """A swarm deployment is one scrape target, as on one engine: its router's /metrics holds
    every task's samples, each labelled with its task; Prometheus' targets file names it, and
    the Monitor's direct scrape counts the requests of all its tasks."""
    from prometheus_client.parser import text_string_to_metric_families

    def by_task() -> dict[str, float]:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "mlops_requests_total":
                    task = sample.labels["task"]
                    counts[task] = counts.get(task, 0.0) + sample.value
        return counts

    # Every replica answers some of the steady clients' requests (least in flight first).
    def on_every_task() -> dict[str, float] | None:
        counts = by_task()
        return counts if len(counts) == 3 and all(counts.values()) else None

    counts = eventually(on_every_task, "requests counted on each of the three tasks", timeout=120)
    assert sum(counts.values()) >= 3
    targets = tmp / "targets.json"
    ok(mlops("monitor", "targets", "--file", str(targets), env=env))
    (group,) = [g for g in json.loads(targets.read_text()) if g["labels"]["deployment"] == name]
    assert group["targets"] == [f"127.0.0.1:{port}"]
    assert group["labels"]["version"] == versions.numbers[0]
    shown = json.loads(ok(mlops("monitor", name, "--json", env=env)))
    (row,) = [r for r in shown["rows"] if r["deployment"] == name]
    assert row["up"] and row["requests_total"] >= sum(counts.values())
    # Labels back through the router: each reaches the task that made its prediction (the
    # others do not know its request id), whichever of the three that was.
    frame = iris_frame()
    rows, truth = frame[FEATURES].values.tolist()[:30], frame["target"].tolist()[:30]
    with httpx.Client(timeout=60) as http:
        answers = [
            http.post(f"http://127.0.0.1:{port}/predict", json={"data": [row]}).json()
            for row in rows
        ]
        labels = [
            {"request_id": a["request_id"], "index": 0, "truth": t}
            for a, t in zip(answers, truth, strict=True)
        ]
        report = http.post(f"http://127.0.0.1:{port}/feedback", json=labels)
    assert report.status_code == 200, report.text
    assert report.json()["accepted"] == len(labels), report.text


@pytest.fixture(scope="module")
def image_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.ImageRegistry]:
    registry = services.start_image_registry(tmp_path_factory.mktemp("registry"))
    yield registry
    registry.stop()


def test_a_pushed_image_is_in_the_registry_under_its_digest(
    versions: Versions, image_registry: services.ImageRegistry
) -> None:
    env = {"MLFLOW_TRACKING_URI": versions.tracking_uri}
    ref = f"{versions.name}/{versions.numbers[1]}"
    doc = json.loads(
        ok(
            mlops(
                "image", "push", ref, "--registry", image_registry.address, "--json", "-q", env=env
            )
        )
    )
    repository, tag = doc["tag"].removeprefix(image_registry.address + "/").rsplit(":", 1)
    # What the registry itself says the tag is: the digest we print.
    manifest = httpx.head(
        f"http://{image_registry.address}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=30,
    )
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"] == doc["digest"]
    assert doc["pinned"] == f"{image_registry.address}/{repository}@{doc['digest']}"
    assert doc["version"] == int(versions.numbers[1]) and doc["built"] is False


def test_a_registry_that_refuses_or_is_not_there_is_named(
    versions: Versions, tmp_path: Path
) -> None:
    env = {"MLFLOW_TRACKING_URI": versions.tracking_uri}
    ref = f"{versions.name}/{versions.numbers[0]}"
    refusing = services.start_image_registry(tmp_path, read_only=True)
    try:
        result = mlops("image", "push", ref, "--registry", refusing.address, "-q", env=env)
    finally:
        refusing.stop()
    assert result.returncode == 1, result.stderr
    assert f"registry {refusing.address} refused" in result.stderr
    nobody = f"127.0.0.1:{services.free_port()}"
    result = mlops("image", "push", ref, "--registry", nobody, "-q", env=env)
    assert result.returncode == 3, result.stderr
    assert f"image registry {nobody} is not reachable" in result.stderr
    result = mlops("image", "push", ref, "--registry", f"http://{nobody}", env=env)
    assert result.returncode == 2 and "not a URL" in result.stderr


def test_a_replica_killed_under_load_fails_no_request_and_is_replaced(
    versions: Versions, swarm_engine: Any, image_registry: services.ImageRegistry
) -> None:
    """With an image registry, the services run the image by its digest there."""
    env = {
        "MLFLOW_TRACKING_URI": versions.tracking_uri,
        "MLOPS_ENGINE": "swarm",
        "MLOPS_IMAGE_REGISTRY": image_registry.address,
    }
    name, v1 = f"{versions.name}-kill", versions.numbers[0]
    port = services.free_port()
    ok(
        mlops(
            "deploy",
            "up",
            f"{versions.name}/{v1}",
            "--name",
            name,
            "--port",
            str(port),
            "--replicas",
            "2",
            "-y",
            "-q",
            env=env,
        )
    )
    ok(mlops("deploy", "scale", name, "3", env=env))
    service = next(r.service for r in swarm.replicas(swarm_engine, name))
    spec = swarm_engine.services.get(service).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["Image"].startswith(f"{image_registry.address}/") and "@sha256:" in spec["Image"]
    tasks = swarm_engine.containers.list(filters={"label": f"{swarm.SERVICE}={service}"})
    assert len(tasks) == 3
    with Load(f"http://127.0.0.1:{port}") as load:
        load.wait_for(v1)
        tasks[0].kill()  # SIGKILL: its connections reset, nothing drained
        eventually(
            lambda: (
                [(r.running, r.desired) for r in swarm.replicas(swarm_engine, name)] == [(3, 3)]
                and tasks[0].id
                not in {
                    c.id
                    for c in swarm_engine.containers.list(
                        filters={"label": f"{swarm.SERVICE}={service}"}
                    )
                }
            ),
            "Swarm to replace the killed replica",
            timeout=180,
        )
        load.wait_for(v1)
    print(f"{len(load.answers)} predictions while a replica was killed and replaced")
    assert not load.failed(), Counter(load.failed()).most_common(5)
    out = ok(mlops("deploy", "scale", name, "1", env=env))
    assert "1/1 replicas" in out
    # Its log is the service's: the lines of every task, the killed one's too, each
    # prefixed as `docker service logs` does (SERVICE.SLOT@NODE |).
    logs = ok(mlops("deploy", "logs", name, "--tail", "50", env=env)).splitlines()
    assert logs, "no log lines"
    node = swarm_engine.info()["Name"]
    prefixes = {line.split(" | ", 1)[0] for line in logs}
    assert prefixes and all(re.fullmatch(rf"{service}\.[1-3]@{node}", p) for p in prefixes), logs
    ok(mlops("deploy", "down", name, "-y", env=env))


def test_a_swarm_context_on_an_engine_that_is_no_manager_exits_3(
    versions: Versions, tmp_path: Path
) -> None:
    """A second engine of our own, outside any swarm (its own socket, data and bridge-less
    network): a swarm context pointed at it is refused before anything is changed."""
    # A short root: containerd's socket lives under --exec-root, and a unix socket's path
    # may not be longer than 107 bytes (pytest's tmp_path is too long for it).
    root = Path(tempfile.mkdtemp(prefix="mlops-dockerd-", dir="/tmp"))
    socket_path = root / "docker.sock"
    log = tmp_path / "dockerd.log"
    # In a network namespace of its own: a dockerd with --bridge=none deletes the host's
    # docker0 when it shares the host's network (the engine under test then had no default
    # bridge: `docker run` failed "could not find bridge docker0" until it was restarted).
    cmd = ["unshare", "--net", *dockerd_args(root)]
    had_docker0 = _has_link("docker0")
    proc = services._spawn(cmd, log, tmp_path)
    try:
        eventually(lambda: _answers(socket_path), "the second dockerd", timeout=120)
        env = {
            "MLFLOW_TRACKING_URI": versions.tracking_uri,
            "MLOPS_ENGINE": "swarm",
            "DOCKER_HOST": f"unix://{socket_path}",
        }
        result = mlops("deploy", "ps", env=env)
        assert result.returncode == 3, result.stderr
        assert "not in a swarm" in result.stderr and "docker swarm init" in result.stderr
        assert _has_link("docker0") == had_docker0, "the second engine changed the host's network"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def _has_link(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def test_a_version_whose_tasks_keep_failing_is_removed_and_says_why(
    versions: Versions, swarm_engine: Any
) -> None:
    env = {"MLFLOW_TRACKING_URI": versions.tracking_uri, "MLOPS_ENGINE": "swarm"}
    port = str(services.free_port())
    broken = f"{versions.name}/{versions.broken}"
    # A new deployment: nothing of it stays (no service, network or volume).
    name = f"{versions.name}-broken"
    result = mlops("deploy", "up", broken, "--name", name, "--port", port, "-y", "-q", env=env)
    assert result.returncode not in (0, 2, 3), result.stderr
    # The tasks' state and the server's own last words, not a bare "failed".
    assert "kept failing" in result.stderr, result.stderr
    assert "this version cannot load where it is served" in result.stderr
    assert not [r for r in swarm.replicas(swarm_engine) if r.deployment == name]
    assert not swarm_engine.networks.list(names=[f"mlops-{name}"])
    # Over a deployment that serves: the broken version goes, the old one serves on.
    name, v1 = f"{versions.name}-stays", versions.numbers[0]
    ok(
        mlops(
            "deploy",
            "up",
            f"{versions.name}/{v1}",
            "--name",
            name,
            "--port",
            port,
            "-y",
            "-q",
            env=env,
        )
    )
    result = mlops("deploy", "up", broken, "--name", name, "-y", "-q", env=env)
    assert result.returncode not in (0, 2, 3) and "kept failing" in result.stderr
    assert [(r.version, r.serving) for r in swarm.replicas(swarm_engine, name)] == [(int(v1), True)]
    answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.status_code == 200 and str(answer.json()["model"]["version"]) == v1
    ok(mlops("deploy", "down", name, "-y", env=env))


def _canary_env(versions: Versions, tmp: Path, **more: str) -> dict[str, str]:
    """A swarm context's environment for a canary release, its state (the release's file and
    its worker's log, printed if the test fails) under ``tmp``."""
    services.remember_state_dir("canary state", tmp / "state" / "canary")
    return {
        "MLFLOW_TRACKING_URI": versions.tracking_uri,
        "MLOPS_ENGINE": "swarm",
        "MLOPS_STATE_DIR": str(tmp / "state"),
        **more,
    }


def test_a_canary_on_a_swarm_is_promoted_on_prometheus_figures_with_no_failed_request(
    versions: Versions,
    swarm_engine: Any,
    tmp_path: Path,
    prometheus: services.PrometheusServer,
) -> None:
    """A canary service beside a 2-replica deployment (as many tasks), its share through the
    router (``tasks.SERVICE``), judged on its own series: Prometheus scrapes them through the
    router's /-/router/canary/metrics (the overlay is not reachable from the host), then it
    is promoted (switched in as any swarm deploy) under steady load with no failed request."""
    name, (v1, v2, _) = f"{versions.name}-cy", versions.numbers
    port = str(services.free_port())
    env = _canary_env(
        versions,
        tmp_path,
        PROMETHEUS_URL=prometheus.url,
        MLOPS_TARGETS_FILE=str(prometheus.targets_path),
    )
    up = ["deploy", "up", f"{versions.name}/{v1}", "--name", name, "--port", port]
    ok(mlops(*up, "--replicas", "2", "-y", "-q", env=env))
    try:
        with Load(f"http://127.0.0.1:{port}") as load:
            load.wait_for(v1)
            done = mlops(
                "deploy", "canary", name, f"{versions.name}/{v2}", "--steps", "30,60,100",
                "--interval", "4s", "--check", "error_ratio<0.02", "--check", "p99<=stable*10",
                "--yes", "--json", env=env, timeout=600,
            )  # fmt: skip
            load.wait_for(v2)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        outcome = json.loads(done.stdout)
        assert outcome["status"] == "promoted", outcome
        assert [d["action"] for d in outcome["history"]] == ["step_up", "promote"]
        assert load.failed() == [], load.failed()[:5]
        assert {v for _, v in load.answers} == {v1, v2}
        query = f'count_over_time(up{{deployment="{name}",role="canary"}}[10m])'
        seen = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=10)
        assert seen.json()["data"]["result"], "Prometheus never scraped the canary"
        rows = swarm.replicas(swarm_engine, name)
        assert [(r.version, r.running, r.serving) for r in rows] == [(int(v2), 2, True)]
        assert not swarm.canary_services(swarm_engine, name)
        roles = [
            g["labels"].get("role", "") for g in json.loads(prometheus.targets_path.read_text())
        ]
        assert "canary" not in roles
    finally:
        _remove_if_there(swarm_engine, name)


def test_a_canary_on_a_swarm_that_never_runs_changes_nothing_and_one_aborted_drains(
    versions: Versions, swarm_engine: Any, tmp_path: Path
) -> None:
    """A canary whose tasks keep failing is removed before the router takes it (the release
    never starts, saying why); one a person aborts gives its share back with no failed
    request, its service gone."""
    name, (v1, v2, _) = f"{versions.name}-ca", versions.numbers
    port = str(services.free_port())
    env = _canary_env(versions, tmp_path)
    ok(mlops("deploy", "up", f"{versions.name}/{v1}", "--name", name, "--port", port, "-y", "-q",
             env=env))  # fmt: skip
    canary = ["deploy", "canary", name]
    checks = ["--steps", "50,100", "--interval", "60s", "--check", "error_ratio<0.02", "--yes"]
    try:
        broken = mlops(*canary, f"{versions.name}/{versions.broken}", *checks, env=env)
        assert broken.returncode not in (0, 2, 3), broken.stderr
        assert "kept failing" in broken.stderr, broken.stderr
        assert not swarm.canary_services(swarm_engine, name)
        router = swarm.router_api(swarm_engine, name)
        assert router.state()["canary"] is None
        with Load(f"http://127.0.0.1:{port}") as load:
            load.wait_for(v1)
            ok(mlops(*canary, f"{versions.name}/{v2}", *checks, "--detach", env=env))
            load.wait_for(v2)  # the canary takes half
            ok(mlops(*canary, "--abort", "--yes", env=env))
            after = len(load.answers)
            load.wait_for(v1)
            eventually(
                lambda: len(load.answers) > after + 50, "answers after the abort", timeout=120
            )
        assert load.failed() == [], load.failed()[:5]
        assert {v for _, v in load.answers[after + 10 :]} == {v1}  # all back on the stable
        assert router.state()["canary"] is None
        assert not swarm.canary_services(swarm_engine, name)
        rows = swarm.replicas(swarm_engine, name)
        assert [(r.version, r.serving) for r in rows] == [(int(v1), True)]
    finally:
        _remove_if_there(swarm_engine, name)


def test_a_shadow_on_a_swarm_is_compared_then_promoted_with_no_failed_request(
    versions: Versions, swarm_engine: Any, tmp_path: Path
) -> None:
    """A shadow service gets the router's copies (to ``tasks.SERVICE``) while clients get the
    stable's answers; its figures come from the router (with the token: a swarm router's
    admin reads need it); promoted under load it is switched in with no failed request."""
    name, (v1, v2, _) = f"{versions.name}-sh", versions.numbers
    port = str(services.free_port())
    env = _canary_env(versions, tmp_path)
    ok(mlops("deploy", "up", f"{versions.name}/{v1}", "--name", name, "--port", port, "-y", "-q",
             env=env))  # fmt: skip
    try:
        with Load(f"http://127.0.0.1:{port}") as load:
            load.wait_for(v1)
            ok(mlops("deploy", "canary", name, f"{versions.name}/{v2}", "--mirror", "50", "--yes",
                     env=env))  # fmt: skip

            def compared() -> dict[str, Any] | None:
                shown = mlops("deploy", "canary", name, "--json", env=env)
                doc: dict[str, Any] = json.loads(shown.stdout) if shown.returncode == 0 else {}
                return doc if doc.get("window_rows", 0) >= 20 else None

            figures = eventually(compared, "the router to compare mirrored rows", timeout=120)
            # Two versions of the same rule: they agree on every row.
            assert figures["disagreement_ratio"] == 0.0 and figures["errors"] == 0, figures
            assert figures["version"] == v2 and figures["copies"] >= 20
            assert {v for _, v in load.answers} == {v1}  # clients never see the shadow
            ok(mlops("deploy", "canary", name, "--promote", "--yes", env=env))
            load.wait_for(v2)
        assert load.failed() == [], load.failed()[:5]
        rows = swarm.replicas(swarm_engine, name)
        assert [(r.version, r.serving) for r in rows] == [(int(v2), True)]
        assert not swarm.canary_services(swarm_engine, name)
        assert swarm.router_api(swarm_engine, name).state()["mirror"] is None
    finally:
        _remove_if_there(swarm_engine, name)


def test_replicas_on_a_second_node_serve_and_switch_under_load(
    versions: Versions, swarm_engine: Any, tmp_path: Path
) -> None:
    """A second engine joined to the swarm as a worker (a dockerd in a network namespace and
    with a host name of its own, reached over a link): a 4-replica deployment runs tasks on
    both nodes, each pulled from the registry by digest; the router on the manager reaches
    those on the other node through the overlay, and a switch under steady load fails nothing
    and lands on both nodes again. Then the node is lost (its link cut) while the next
    version's tasks start on it: Swarm finds it down and starts them on the node that is
    left, and the switch completes there. Back, then lost again when no other node can take
    the next version's tasks: that switch gives up in its time (--timeout), naming the node,
    and the version before serves on."""
    from tests.second_node import start_second_node

    manager = swarm_engine.info()["Swarm"]["NodeAddr"]
    if manager.startswith("127."):
        services.service_missing(f"the swarm advertises {manager}: no second node reaches it")
    name, (v1, v2, v3) = f"{versions.name}-two", versions.numbers
    joined: list[str] = []
    with contextlib.ExitStack() as cleanup:
        (tmp_path / "registry").mkdir()
        registry = services.start_image_registry(tmp_path / "registry", listen="0.0.0.0")
        cleanup.callback(registry.stop)
        node = start_second_node(tmp_path, manager)
        cleanup.callback(node.stop)
        worker = node.client()
        cleanup.callback(worker.close)
        cleanup.callback(_forget, swarm_engine, worker, joined)
        cleanup.callback(_remove_if_there, swarm_engine, name)  # the first to run
        node.forward_registry(int(registry.address.rsplit(":", 1)[1]))
        swarm_engine.swarm.reload()
        worker.swarm.join(
            remote_addrs=[f"{manager}:2377"],
            join_token=swarm_engine.swarm.attrs["JoinTokens"]["Worker"],
            advertise_addr=node.address,
            listen_addr=f"{node.address}:2377",
        )
        joined.append(worker.info()["Swarm"]["NodeID"])
        eventually(
            lambda: swarm_engine.nodes.get(joined[0]).attrs["Status"]["State"] == "ready",
            "the second node to be ready",
            timeout=120,
        )
        env = {
            "MLFLOW_TRACKING_URI": versions.tracking_uri,
            "MLOPS_ENGINE": "swarm",
            "MLOPS_IMAGE_REGISTRY": registry.address,
        }
        port = services.free_port()
        up = ["--name", name, "--port", str(port), "--replicas", "4", "-y", "-q"]
        ok(mlops("deploy", "up", f"{versions.name}/{v1}", *up, env=env))
        here = swarm_engine.info()["Name"]
        both = {here, node.hostname}
        assert _nodes_of(env, name) == both
        with Load(f"http://127.0.0.1:{port}") as load:
            load.wait_for(v1)
            eventually(
                lambda: _answered_on(swarm_engine, port, name) == both,
                "requests answered by tasks on both nodes",
                timeout=120,
            )
            ok(mlops("deploy", "up", f"{versions.name}/{v2}", "--name", name, "-y", "-q", env=env))
            load.wait_for(v2)
        print(f"{len(load.answers)} predictions on two nodes through a switch")
        assert not load.failed(), Counter(load.failed()).most_common(5)
        assert _nodes_of(env, name) == both

        switching = subprocess.Popen(
            [sys.executable, "-c", "from console.cli.main import run; run()", "deploy", "up",
             f"{versions.name}/{v3}", "--name", name, "-y", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=services.env_with_venv_on_path(**env),
        )  # fmt: skip
        try:
            eventually(
                lambda: _tasks_on(swarm_engine, name, v3, joined[0]),
                f"a task of v{v3} on the second node",
                timeout=180,
            )
            node.cut_link()
            out, err = switching.communicate(timeout=400)
        finally:
            if switching.poll() is None:
                switching.kill()
                switching.wait()
        assert switching.returncode == 0, f"{out}\n{err}"
        assert swarm_engine.nodes.get(joined[0]).attrs["Status"]["State"] != "ready"
        assert _nodes_of(env, name) == {here}
        assert _answer(port) == v3

        # Lost where no other node can take its tasks (the manager paused: it keeps what it
        # runs and takes nothing new): the switch cannot complete, and when its time is up the
        # new version goes, the router never moved, and the error names the node.
        node.restore_link()
        eventually(
            lambda: swarm_engine.nodes.get(joined[0]).attrs["Status"]["State"] == "ready",
            "the second node to be back",
            timeout=180,
        )
        here_id = swarm_engine.info()["Swarm"]["NodeID"]
        _availability(swarm_engine, here_id, "pause")
        cleanup.callback(_availability, swarm_engine, here_id, "active")
        switching = subprocess.Popen(
            [sys.executable, "-c", "from console.cli.main import run; run()", "deploy", "up",
             f"{versions.name}/{v1}", "--name", name, "--timeout", "45", "-y", "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=services.env_with_venv_on_path(**env),
        )  # fmt: skip
        try:
            node.cut_link()  # before the command has made its service: nothing of it can run
            out, err = switching.communicate(timeout=400)
        finally:
            if switching.poll() is None:
                switching.kill()
                switching.wait()
        print(f"the switch with its only node lost: exit {switching.returncode}\n{err[-600:]}")
        assert switching.returncode not in (0, 2, 3), f"{out}\n{err}"
        assert node.hostname in err, err
        assert _answer(port) == v3  # the old version serves on: nothing moved
        assert [r.version for r in swarm.replicas(swarm_engine, name)] == [int(v3)]
        _availability(swarm_engine, here_id, "active")
        ok(mlops("deploy", "down", name, "-y", env=env))


def _answer(port: int) -> str:
    """The version that answers a prediction through the router on ``port``."""
    with httpx.Client(timeout=30) as http:
        answer = http.post(f"http://127.0.0.1:{port}/predict", json={"data": [[1, 2, 3, 4]]})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["model"]["version"])


def _availability(client: Any, node_id: str, availability: str) -> None:
    """`docker node update --availability` (active, pause, drain)."""
    node = client.nodes.get(node_id)
    spec = dict(node.attrs["Spec"], Availability=availability)
    node.update(spec)


def _remove_if_there(client: Any, name: str) -> None:
    """A deployment a failed test left: the module's other tests share the swarm."""
    with contextlib.suppress(Exception):
        if any(d.name == name for d in swarm.list_deployments(client)):
            swarm.remove_deployment(client, name)


def _forget(client: Any, worker: Any, joined: list[str]) -> None:
    """The second node out of the swarm: it leaves, and the manager forgets it."""
    for node_id in joined:
        with contextlib.suppress(Exception):
            worker.swarm.leave(force=True)
        with contextlib.suppress(Exception):
            client.nodes.get(node_id).remove(force=True)


def _tasks_on(client: Any, name: str, version: str, node_id: str) -> bool:
    """Whether a task of ``version``'s service of deployment ``name`` is assigned to the node."""
    for service in client.services.list(filters={"name": f"mlops-{name}-v{version}-"}):
        if any(t.get("NodeID") == node_id for t in service.tasks()):
            return True
    return False


def _nodes_of(env: dict[str, str], name: str) -> set[str]:
    """The nodes `deploy ps` says the serving version's replicas run on (all running)."""
    ps = json.loads(ok(mlops("deploy", "ps", "--json", env=env)))
    (row,) = next(d for d in ps if d["name"] == name)["replicas"]
    assert (row["running"], row["desired"]) == (4, 4), row
    return set(row["nodes"])


def _answered_on(client: Any, port: int, name: str) -> set[str]:
    """The nodes whose tasks answered requests through the router: its /metrics labels each
    task's samples with the task's address, and Swarm says which node has that address."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    answered = {
        sample.labels["task"].rsplit(":", 1)[0]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mlops_requests_total" and sample.value > 0
    }
    names = {n.id: n.attrs["Description"]["Hostname"] for n in client.nodes.list()}
    found = set()
    for service in client.services.list(filters={"name": f"mlops-{name}-v"}):
        for task in service.tasks(filters={"desired-state": "running"}):
            for attachment in task.get("NetworksAttachments", []):
                addresses = {a.split("/", 1)[0] for a in attachment.get("Addresses", [])}
                if addresses & answered:
                    found.add(names.get(task["NodeID"], task["NodeID"]))
    return found
