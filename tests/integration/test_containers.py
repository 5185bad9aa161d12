"""Serving images and deployments on the real Docker engine (images from the local base)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from backends.docker import containers, hardening, images, switch
from backends.errors import BackendError, Conflict
from backends.lifecycle import build
from backends.lifecycle.handles import Handles
from backends.records import ServingImage
from tests import services
from tests.models import log_version, pyfunc_predictions
from tests.server.conftest import FEATURES, iris_frame
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.mlflow_server]


GIT = ("https://git.example.org/ml/iris.git", "9f2c4e1a7b3d5f60718293a4b5c6d7e8f9012345")


@dataclass
class Built:
    tracking_uri: str
    name: str
    v1: ServingImage
    v2: ServingImage
    log: list[str]


@pytest.fixture(scope="module")
def built(
    mlflow_server: services.MlflowServer,
    docker_client: Any,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Built]:
    import mlflow
    from mlflow.tracking import MlflowClient

    # For this module's tests only: the variable goes with the module (a later test's
    # subprocess or tmux console must not find this server by accident).
    environment = pytest.MonkeyPatch()
    environment.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"iris-docker-{os.getpid()}"
    exp = MlflowClient(mlflow_server.url).create_experiment(name)
    tmp = tmp_path_factory.mktemp("docker-models")
    log_version(exp, name, 1, True, tmp, git=GIT)
    log_version(exp, name, 2, False, tmp)
    MlflowClient(mlflow_server.url).set_registered_model_alias(name, "champion", "1")
    log: list[str] = []
    h = Handles(mlflow_server.url, docker=docker_client)
    v1 = build.build(h, f"{name}@champion", base_image=base_image, on_log=log.append).image
    v2 = build.build(h, f"{name}/2", base_image=base_image).image
    yield Built(mlflow_server.url, name, v1, v2, log)
    environment.undo()
    for deployment in containers.list_deployments(docker_client):
        if deployment.model == name:
            containers.remove_deployment(docker_client, deployment.name)
    for image in (v1, v2):
        docker_client.images.remove(image.id, force=True)


def test_image_is_labelled_non_root_and_carries_no_tracking_address(
    built: Built, docker_client: Any
) -> None:
    assert any(line.startswith("Step ") for line in built.log)  # progress was streamed
    image = docker_client.images.get(built.v1.id)
    labels = image.labels
    assert labels["org.mlops-console.model"] == built.name
    assert labels["org.mlops-console.version"] == "1"
    assert "org.mlops-console.alias" not in labels  # an image is a version, not an alias
    # The OCI annotations in the spec's meanings (the code's repository and commit, as the run
    # recorded them); the model's own provenance in ours.
    assert labels["org.opencontainers.image.source"] == GIT[0]
    assert labels["org.opencontainers.image.revision"] == GIT[1]
    assert labels["org.mlops-console.model-uri"] == f"models:/{built.name}/1"
    from mlflow.tracking import MlflowClient

    v2_labels = docker_client.images.get(built.v2.id).labels
    v2_run = MlflowClient(built.tracking_uri).get_run(v2_labels["org.mlops-console.run-id"])
    # v2's run recorded whatever git the test process was started from, or none: never a URI
    # that is not a repository's.
    assert v2_labels.get("org.opencontainers.image.source") == v2_run.data.tags.get(
        "mlflow.source.git.repoURL"
    )
    assert v2_labels.get("org.opencontainers.image.revision") == v2_run.data.tags.get(
        "mlflow.source.git.commit"
    )
    assert labels["org.mlops-console.run-id"] == built.v1.run_id
    assert image.attrs["Config"]["User"] == "10001"
    assert "Healthcheck" in image.attrs["Config"]
    # No layer, env var or label holds the tracking server's address.
    port = built.tracking_uri.rsplit(":", 1)[1]
    everything = str(image.history()) + str(image.attrs["Config"])
    assert built.tracking_uri not in everything and f":{port}" not in everything
    out = docker_client.containers.run(
        built.v1.id, ["id", "-u"], remove=True, network_disabled=True
    )
    assert out.decode().strip() == "10001"
    listed = {i.version for i in images.list_images(docker_client, model=built.name)}
    assert listed == {1, 2}


def test_rebuilding_an_unchanged_version_is_all_cache(built: Built, docker_client: Any) -> None:
    log: list[str] = []
    outcome = build.build(
        Handles(built.tracking_uri, docker=docker_client),
        f"{built.name}/1",
        base_image=services.BASE_IMAGE,
        tag=built.v1.tags[0],
        on_log=log.append,
    )
    steps = [line for line in log if line.startswith("Step ")]
    cached = [line for line in log if "Using cache" in line]
    layerless = [s for s in steps if s.partition(" : ")[2].startswith(("ARG ", "FROM "))]
    assert len(layerless) == 3  # ARG, then the FROM of each stage (dependencies, the image)
    assert len(cached) == len(steps) - len(layerless)  # every other step came from the cache
    # ... and the build says so. Not always the same image id: builds of other versions that
    # ran at once on an empty cache left equal layer chains, and a rebuild may take any.
    assert outcome.cached and outcome.image.version == 1


def test_deployment_predicts_like_in_process_and_switches_without_failures(
    built: Built, docker_client: Any
) -> None:
    port = services.free_port()
    name = f"t{os.getpid()}"
    _, replaced = switch.deploy(docker_client, built.v1, name, port=port, alias="champion")
    assert replaced is None
    url = f"http://127.0.0.1:{port}"
    rows = iris_frame()[FEATURES].values.tolist()
    got = httpx.post(f"{url}/predict", json={"data": rows}, timeout=30).json()
    assert got["predictions"] == pyfunc_predictions(f"models:/{built.name}/1", rows)
    assert got["model"]["version"] == "1"
    # The baked scikit-learn model was read without importing MLflow (server/sklearn_dir.py):
    # a second less of CPU at every container start.
    (model_container,) = docker_client.containers.list(
        filters={"label": [f"{containers.ROLE}=model", f"{containers.DEPLOYMENT}={name}"]}
    )
    assert "loaded /model without MLflow" in model_container.logs().decode()

    (ps,) = [d for d in containers.list_deployments(docker_client) if d.name == name]
    assert (ps.model, ps.version, ps.alias, ps.port, ps.state) == (
        built.name,
        1,
        "champion",
        port,
        "running",
    )

    statuses: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def steady() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                sent = time.monotonic()  # by send time: a request sent after a switch
                try:  # returned must be answered by the new version
                    r = http.post(f"{url}/predict", json={"data": [rows[0]]})
                    statuses.append(
                        (
                            sent,
                            r.status_code,
                            r.json()["model"]["version"] if r.status_code == 200 else "",
                        )
                    )
                except httpx.HTTPError:
                    statuses.append((sent, 0, ""))
                stop.wait(services.LOAD_PACE)

    threads = [threading.Thread(target=steady) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        _, replaced = switch.deploy(docker_client, built.v2, name, port=port)
        switched = time.monotonic()
        assert replaced == 1
        assert containers.previous_version(docker_client, name) == 1
        time.sleep(0.5)
        rolling = time.monotonic()
        _, replaced = switch.deploy(docker_client, built.v1, name, port=port)
        rolled = time.monotonic()
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert replaced == 2
    assert statuses and {s for _, s, _ in statuses} == {200}
    between = [v for at, _, v in statuses if switched < at < rolling]
    after = [v for at, _, v in statuses if at > rolled]
    assert between and set(between) == {"2"}
    assert after and set(after) == {"1"}
    assert (
        len(
            [
                c
                for c in docker_client.containers.list(
                    filters={"label": f"org.mlops-console.deployment={name}"}
                )
            ]
        )
        == 2
    )  # router + one model
    containers.remove_deployment(docker_client, name)
    assert not any(d.name == name for d in containers.list_deployments(docker_client))


def test_port_in_use_is_a_conflict_naming_the_port(built: Built, docker_client: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Conflict, match=f"port {port}"):
            switch.deploy(docker_client, built.v1, f"busy{os.getpid()}", port=port)


def test_a_crashing_container_shows_its_last_log_lines(built: Built, docker_client: Any) -> None:
    # Follow an alias that does not exist: the server cannot load and exits at start.
    with pytest.raises(switch.ContainerFailed) as failure:
        switch.deploy(
            docker_client,
            built.v1,
            f"crash{os.getpid()}",
            port=services.free_port(),
            follow_alias_ref=f"{built.name}@nosuch",
            tracking_uri=built.tracking_uri,
            timeout=90,
        )
    assert "failed to load" in failure.value.message
    assert "nosuch" in failure.value.message


def test_a_failing_build_names_the_step(built: Built, docker_client: Any, tmp_path: Path) -> None:
    # A base image without python: the venv step must fail, and say so.
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        data = b"not a distribution\n"
        info = tarfile.TarInfo("README")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    tag = "mlops-test-nopython:1"
    docker_client.api.import_image_from_data(
        buffer.getvalue(), repository="mlops-test-nopython", tag="1"
    )
    try:
        with pytest.raises(BackendError) as failure:
            build.build(
                Handles(built.tracking_uri, docker=docker_client),
                f"{built.name}/1",
                base_image=tag,
                tag="mlops-test-broken:1",
            )
        assert failure.value.title == "Image build failed"
        assert "Step" in failure.value.message and "RUN python3 -m venv" in failure.value.message
    finally:
        docker_client.images.remove(tag, force=True)


def test_cli_says_docker_is_unreachable_with_exit_3(tmp_path: Path) -> None:
    from console.cli.main import app

    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    result = CliRunner().invoke(app, ["deploy", "ps"], env=env)
    assert result.exit_code == 3
    assert "Docker engine at unix://" in result.output and "not reachable" in result.output


def test_cli_deploy_rollback_and_history(built: Built, docker_client: Any) -> None:
    import json

    from mlflow.tracking import MlflowClient

    from console.cli.main import app

    runner = CliRunner()
    env = {"MLFLOW_TRACKING_URI": built.tracking_uri, "MLOPS_USER": "ci-operator"}
    port = str(services.free_port())
    name = f"cli{os.getpid()}"
    first = runner.invoke(
        app,
        ["deploy", "up", f"{built.name}@champion", "--name", name, "--port", port, "--quiet"],
        env=env,
    )
    assert first.exit_code == 0, first.output
    assert f"v1 serving on http://127.0.0.1:{port}" in first.output
    nothing = runner.invoke(app, ["deploy", "rollback", name], env=env)
    assert nothing.exit_code == 1 and "no earlier version" in nothing.output
    assert "never switched" in nothing.output

    MlflowClient(built.tracking_uri).set_registered_model_alias(built.name, "champion", "2")
    try:
        upgraded = runner.invoke(
            app,
            [
                "deploy",
                "up",
                f"{built.name}@champion",
                "--name",
                name,
                "--port",
                port,
                "--reason",
                "new model",
            ],
            env=env,
        )
        assert upgraded.exit_code == 0, upgraded.output
        assert "v2 serving" in upgraded.output and "(was v1)" in upgraded.output
        back = runner.invoke(
            app, ["deploy", "rollback", name, "--reason", "p99 regressed", "--json"], env=env
        )
        assert back.exit_code == 0, back.output
        rolled = json.loads(back.stdout)  # --json: only the document on stdout
        assert (rolled["from_version"], rolled["to_version"], rolled["via_alias"]) == (2, 1, False)
        assert rolled["deployment"]["url"] == f"http://127.0.0.1:{port}"
    finally:
        MlflowClient(built.tracking_uri).set_registered_model_alias(built.name, "champion", "1")

    ps = runner.invoke(app, ["deploy", "ps", "--json"], env=env)
    (mine,) = [d for d in json.loads(ps.output) if d["name"] == name]
    assert (mine["version"], mine["url"]) == (1, f"http://127.0.0.1:{port}")
    logs = runner.invoke(app, ["deploy", "logs", name, "--tail", "20"], env=env)
    assert logs.exit_code == 0 and "serving" in logs.output

    history = runner.invoke(app, ["models", "history", built.name, "--json"], env=env)
    assert history.exit_code == 0, history.output
    moves = [
        (e["action"], e["from_version"], e["to_version"], e["who"], e["reason"])
        for e in json.loads(history.output)["events"]
        if e["alias"] == f"deploy/{name}"
    ]
    assert moves == [
        ("deploy", None, 1, "ci-operator", ""),
        ("deploy", 1, 2, "ci-operator", "new model"),
        ("rollback", 2, 1, "ci-operator", "p99 regressed"),
    ]

    down = runner.invoke(app, ["deploy", "down", name, "--json"], env=env)
    assert down.exit_code == 0, down.output
    removed = json.loads(down.stdout)
    assert removed["name"] == name and f"mlops-{name}" in removed["removed"]
    missing = runner.invoke(app, ["deploy", "down", name, "--json"], env=env)
    assert missing.exit_code == 4 and "no deployment named" in missing.stderr
    assert missing.stdout == ""


def deploy_following(
    docker_client: Any, built: Built, name: str, tracking_uri: str
) -> tuple[Any, str]:
    """v1 deployed as ``name``, following ``champion`` through ``tracking_uri``; its URL."""
    port = services.free_port()
    deployment, _ = switch.deploy(
        docker_client,
        built.v1,
        name,
        port=port,
        alias="champion",
        follow_alias_ref=f"{built.name}@champion",
        tracking_uri=tracking_uri,
    )
    return deployment, f"http://127.0.0.1:{port}"


def test_follow_alias_deployment_reloads_when_the_alias_moves(
    built: Built, docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLOPS_FOLLOW_INTERVAL", "1")
    name = f"follow{os.getpid()}"
    deployment, url = deploy_following(docker_client, built, name, built.tracking_uri)
    assert deployment.follow_alias
    registry = MlflowClient(built.tracking_uri)
    try:
        assert httpx.get(f"{url}/version").json()["version"] == "1"
        from backends.mlflow.registry import Registry

        # Through the registry (not a bare alias move), so the history knows where it came from.
        Registry(built.tracking_uri).promote(built.name, 2, alias="champion", reason="test")
        deadline = time.monotonic() + 60
        versions = []
        while time.monotonic() < deadline:
            r = httpx.post(f"{url}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30)
            assert r.status_code == 200, r.text  # no failed request while it reloads in place
            versions.append(r.json()["model"]["version"])
            if versions[-1] == "2":
                break
            time.sleep(0.1)
        assert versions[-1] == "2", versions[-5:]
        assert httpx.get(f"{url}/version").json()["alias"] == "champion"

        from console.cli.main import app

        back = CliRunner().invoke(
            app, ["deploy", "rollback", name], env={"MLFLOW_TRACKING_URI": built.tracking_uri}
        )
        assert back.exit_code == 0, back.output
        assert "rolled back from v2 to v1" in back.output and "reloads in place" in back.output
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if httpx.get(f"{url}/version").json()["version"] == "1":
                break
            time.sleep(0.2)
        assert httpx.get(f"{url}/version").json()["version"] == "1"
    finally:
        registry.set_registered_model_alias(built.name, "champion", "1")
        containers.remove_deployment(docker_client, name)


def test_a_follow_alias_container_reads_a_guarded_registry_with_credentials_not_inspectable(
    built: Built, docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backends.mlflow.registry import Registry
    from tests.proxies import RelayProxy, self_signed_certificate

    token = f"tok-{os.getpid()}-a91f3c"
    cert, key = self_signed_certificate(tmp_path)
    proxy = RelayProxy(built.tracking_uri, token=token, tls=(cert, key))
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
    monkeypatch.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(cert))
    monkeypatch.setenv("MLOPS_FOLLOW_INTERVAL", "1")
    name = f"guarded{os.getpid()}"
    _, url = deploy_following(docker_client, built, name, proxy.url)
    try:
        model = containers.active_model(docker_client, name)
        router = containers.router_of(docker_client, name)
        assert model is not None and router is not None
        for c in (model, router):
            c.reload()
            assert token not in json.dumps(c.attrs)  # not in env, labels, args or mounts
        env = model.attrs["Config"]["Env"]
        assert f"MLOPS_CREDENTIALS_FILE={hardening.CREDENTIALS_FILE}" in env
        # The credentials' volume is the model containers' alone, and the router's (its admin
        # token) is not theirs: a model's own code can read neither the other's secret.
        model_mounts = {m["Destination"] for m in model.attrs["Mounts"]}
        router_mounts = {m["Destination"] for m in router.attrs["Mounts"]}
        assert hardening.CREDENTIALS_MOUNT in model_mounts
        assert hardening.STATE_MOUNT not in model_mounts
        assert hardening.CREDENTIALS_MOUNT not in router_mounts
        assert f"MLFLOW_TRACKING_SERVER_CERT_PATH={hardening.CA_FILE}" in env
        # The server asks the registry through TLS with the token: it is let in, never refused.
        eventually(
            lambda: proxy.seen["with_token"] > 0, "the container read the registry", timeout=120
        )
        Registry(proxy.url).promote(built.name, 2, alias="champion", reason="guarded test")
        eventually(
            lambda: httpx.get(f"{url}/version").json()["version"] == "2",
            "the container reloaded v2 through the guarded registry",
            timeout=120,
        )
        assert proxy.seen["refused"] == 0
    finally:
        from mlflow.tracking import MlflowClient

        MlflowClient(built.tracking_uri).set_registered_model_alias(built.name, "champion", "1")
        containers.remove_deployment(docker_client, name)
        proxy.close()


def test_cli_image_build_says_an_unchanged_version_came_from_cache(built: Built) -> None:
    from console.cli.main import app

    result = CliRunner().invoke(
        app,
        ["image", "build", f"{built.name}/1", "--tag", built.v1.tags[0], "--quiet"],
        env={"MLFLOW_TRACKING_URI": built.tracking_uri, "MLOPS_BASE_IMAGE": services.BASE_IMAGE},
    )
    assert result.exit_code == 0, result.output
    assert f"built {built.v1.tags[0]}" in result.output
    assert "unchanged: every step from cache" in result.output


def test_the_console_deploys_and_rolls_back_through_the_cli_path(
    built: Built, docker_client: Any
) -> None:
    """The console's `u` and `R` run backends.lifecycle, exactly as `mlops deploy` does."""
    from backends.mlflow.registry import Registry
    from console.config import Settings
    from console.services import Services

    backends = Services.real(Settings(built.tracking_uri, None, None, "test")).deployments
    port = services.free_port()
    name = f"tui{os.getpid()}"

    def quiet(_line: str) -> None:
        pass

    try:
        first = backends.plan_deploy(f"{built.name}/1", name, port, "127.0.0.1", False)
        assert first.current is None and first.image is not None
        assert (first.version.version, first.image.id) == (1, built.v1.id)
        backends.deploy(first, quiet)

        with pytest.raises(Conflict, match=f"serves on 127.0.0.1:{port}"):
            backends.plan_deploy(f"{built.name}/2", name, port + 1, "127.0.0.1", False)
        second = backends.plan_deploy(f"{built.name}/2", name, port, "127.0.0.1", False)
        assert second.replaces == 1
        outcome = backends.deploy(second, quiet)
        assert (outcome.replaced, outcome.deployment.version, outcome.built) == (1, 2, False)
        with pytest.raises(Conflict, match="changed since the plan"):
            backends.deploy(second, quiet)  # the plan saw v1 serving: it is stale now

        plan = backends.plan_rollback(name)
        assert (plan.from_version, plan.to_version, plan.image_missing) == (2, 1, False)
        back = backends.rollback(plan, quiet)
        assert (back.from_version, back.to_version, back.via_alias) == (2, 1, False)
        assert httpx.get(f"http://127.0.0.1:{port}/version").json()["version"] == "1"
        moves = [
            (e.action, e.from_version, e.to_version, e.reason)
            for e in Registry(built.tracking_uri).history(built.name)
            if e.alias == f"deploy/{name}"
        ]
        assert moves == [
            ("deploy", None, 1, "console"),
            ("deploy", 1, 2, "console"),
            ("rollback", 2, 1, "console"),
        ]
    finally:
        containers.remove_deployment(docker_client, name)


def test_a_take_down_confirmed_after_another_deploy_is_refused(
    built: Built, docker_client: Any
) -> None:
    """`mlops deploy down` shows what it removes; another operator deploys over the deployment
    before the "yes": nothing is removed (exit 5), and the new version keeps serving."""
    import sys

    from tests.terminal import Terminal

    port = services.free_port()
    name = f"down{os.getpid()}"
    switch.deploy(docker_client, built.v1, name, port=port)
    try:
        env = services.env_with_venv_on_path(MLFLOW_TRACKING_URI=built.tracking_uri)
        shell = Terminal([str(Path(sys.executable).parent / "mlops"), "deploy", "down", name], env)
        shown = shell.wait_for("Apply this plan?")
        assert f"serving {built.name} v1" in shown
        switch.deploy(docker_client, built.v2, name, port=port)  # someone else, meanwhile
        shell.type("y\n")
        code, out = shell.finish()
        assert code == 5 and "changed since the plan" in out, out
        assert httpx.get(f"http://127.0.0.1:{port}/version").json()["version"] == "2"
    finally:
        containers.remove_deployment(docker_client, name)


def test_a_console_rollback_confirmed_after_another_rollback_is_refused(
    built: Built, docker_client: Any, tmp_path: Path
) -> None:
    """In the console: `R` shows "from version 2 to version 1"; from another shell the
    deployment is switched before `y`: the console refuses in a dialog, nothing switches."""
    import sys

    from tests.e2e.tmux import TmuxSession

    port = services.free_port()
    name = f"tuirb{os.getpid()}"
    switch.deploy(docker_client, built.v1, name, port=port)
    switch.deploy(docker_client, built.v2, name, port=port)
    session = TmuxSession(
        str(Path(sys.executable).parent / "mlops"),
        width=140,
        height=40,
        cwd=str(tmp_path),
        env={
            "MLFLOW_TRACKING_URI": built.tracking_uri,
            "MLOPS_CONTEXT": "e2e",
            "TERM": "xterm-256color",
        },
    )
    try:
        session.wait_for("Docker connected")
        session.send(":")
        session.wait_for("runs | models")
        session.send("deploy", "Enter")
        session.wait_for(name)
        session.send("/")
        session.wait_for("filter: part of")
        session.press(name, "Enter")
        session.wait_for(f"filter: {name}")
        session.send("R")
        screen = session.wait_for(f"Roll back {name}?")
        assert "from version 2" in screen and "to   version 1" in screen
        switch.deploy(docker_client, built.v1, name, port=port)  # another shell rolled it back
        session.send("y")
        screen = session.wait_for("changed since")
        assert "Conflict" in screen
        deployed = containers.get_deployment(docker_client, name)
        assert deployed.version == 1  # the other shell's switch; the console's never happened
        session.press("Enter", "Escape", "q", pause=0.3)
        session.wait_exit()
    finally:
        session.close()
        containers.remove_deployment(docker_client, name)


def test_containers_are_hardened_and_the_admin_token_is_nowhere_to_be_read(
    built: Built, docker_client: Any
) -> None:
    port = services.free_port()
    name = f"hard{os.getpid()}"
    switch.deploy(docker_client, built.v1, name, port=port)
    try:
        router = containers.router_of(docker_client, name)
        model = containers.active_model(docker_client, name)
        assert router is not None and model is not None
        for c in (router, model):
            c.reload()
            host = c.attrs["HostConfig"]
            assert host["CapDrop"] == ["ALL"] and "no-new-privileges" in host["SecurityOpt"]
            assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"]
            assert host["Memory"] > 0 and host["PidsLimit"] > 0
            assert host["LogConfig"]["Config"]["max-size"] and c.attrs["Config"]["StopTimeout"]
            assert host["RestartPolicy"]["Name"] == "unless-stopped"
            # The router's token is in its volume, not in anything `docker inspect` shows.
            inspected = json.dumps(c.attrs)
            token = hardening.read_token(router)
            assert len(token) >= 24 and token not in inspected
        # The model is read-only to the server user; the root filesystem too. Judged by
        # touch's exit status: an exec's output can come back empty from a loaded engine
        # (ci7: b'' for a `|| echo denied`), its exit code cannot.
        for path, allowed in (("/model/x", False), ("/opt/x", False), ("/tmp/x", True)):
            touched = model.exec_run(["touch", path], user="10001")
            assert (touched.exit_code == 0) is allowed, (path, touched)
        # The admin routes answer loopback only, and a remote-looking client gets a 404.
        assert httpx.get(f"http://127.0.0.1:{port}/-/router/health").status_code == 200
        # The image's health check (bash's /dev/tcp, not a Python start every 2 s) passes on a
        # ready server and fails where nothing answers.
        eventually(lambda: _health(model) == "healthy", "docker's health check to pass")
        probe = model.attrs["Config"]["Healthcheck"]["Test"]
        assert probe[:2] == ["CMD", "bash"]
        assert model.exec_run(probe[1:], user="10001").exit_code == 0
        closed = model.exec_run(probe[1:], user="10001", environment={"MLOPS_PORT": "9"})
        assert closed.exit_code != 0
    finally:
        containers.remove_deployment(docker_client, name)
    assert not docker_client.volumes.list(filters={"name": f"mlops-{name}-state"})


def test_a_restarted_router_comes_back_on_the_live_version(
    built: Built, docker_client: Any
) -> None:
    port = services.free_port()
    name = f"rst{os.getpid()}"
    switch.deploy(docker_client, built.v1, name, port=port)
    switch.deploy(docker_client, built.v2, name, port=port)
    try:
        router = containers.router_of(docker_client, name)
        assert router is not None
        router.restart(timeout=30)  # as after a crash, or an engine (host) restart
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/-/router/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.3)
        answer = httpx.post(f"{url}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30)
        assert answer.status_code == 200 and answer.json()["model"]["version"] == "2"
    finally:
        containers.remove_deployment(docker_client, name)


def test_two_deploys_of_one_deployment_at_once_one_wins_the_other_exits_5(
    built: Built, docker_client: Any
) -> None:
    import subprocess
    import sys

    port = str(services.free_port())
    name = f"race{os.getpid()}"
    env = services.env_with_venv_on_path(MLFLOW_TRACKING_URI=built.tracking_uri)
    mlops = str(Path(sys.executable).parent / "mlops")
    procs = [
        subprocess.Popen(
            [mlops, "deploy", "up", f"{built.name}/{v}", "--name", name, "--port", port, "-q"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (1, 2)
    ]
    try:
        results = [(p.wait(timeout=600), p.stderr.read() if p.stderr else "") for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 5], results
        loser = next(err for code, err in results if code == 5)
        assert "being changed by" in loser or "changed since the plan" in loser, loser
        deployed = containers.get_deployment(docker_client, name)
        running = [
            c for c in containers.model_containers(docker_client, name) if c.status == "running"
        ]
        assert len(running) == 1 and deployed.version in (1, 2)
    finally:
        with contextlib.suppress(Exception):
            containers.remove_deployment(docker_client, name)


def test_another_stores_deployment_is_never_taken_for_ours(
    built: Built, docker_client: Any, tmp_path: Path
) -> None:
    """A second tracking store with its own "iris v1" (same name, same number): its deploy
    over our deployment is refused (exit 5), and its image does not overwrite ours."""
    import mlflow
    from mlflow.tracking import MlflowClient

    port = services.free_port()
    name = f"stores{os.getpid()}"
    switch.deploy(docker_client, built.v1, name, port=port)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("MLFLOW_TRACKING_URI", other)
            mlflow.set_tracking_uri(other)
            exp = MlflowClient(other).create_experiment("other-store")
            log_version(exp, built.name, 1, False, tmp_path)
        mlflow.set_tracking_uri(built.tracking_uri)
        from console.cli.main import app

        env = {"MLFLOW_TRACKING_URI": other, "MLOPS_BASE_IMAGE": services.BASE_IMAGE}
        refused = CliRunner().invoke(
            app, ["deploy", "up", f"{built.name}/1", "--name", name, "--port", str(port)], env=env
        )
        assert refused.exit_code == 5, refused.output
        assert "another tracking store" in refused.output
        # Its own image of "v1" is another image, tagged apart from ours.
        h = Handles(other, docker=docker_client)
        theirs = build.build(h, f"{built.name}/1", base_image=services.BASE_IMAGE).image
        assert theirs.id != built.v1.id and theirs.tags[0] != built.v1.tags[0]
        assert images.find_image(docker_client, h.registry().version(built.name, 1)) == theirs
        docker_client.images.remove(theirs.id, force=True)
        ours = containers.get_deployment(docker_client, name)
        assert ours.run_id == built.v1.run_id and ours.store == built.v1.store
    finally:
        containers.remove_deployment(docker_client, name)


def test_labels_through_the_router_judge_each_row_by_the_version_that_answered_it(
    built: Built, docker_client: Any, tmp_path: Path
) -> None:
    """predict → switch → feedback through the router: the deployment's log volume outlives
    the switch, so the new container still knows the old version's rows, and each label counts
    for the version that made the prediction."""
    port = services.free_port()
    name = f"fb{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    rows = iris_frame()[FEATURES].values.tolist()
    truth = iris_frame()["target"].tolist()
    switch.deploy(docker_client, built.v1, name, port=port)
    try:
        first = httpx.post(f"{url}/predict", json={"data": rows[:20]}, timeout=30).json()
        switch.deploy(docker_client, built.v2, name, port=port)
        second = httpx.post(f"{url}/predict", json={"data": rows[20:40]}, timeout=30).json()
        assert (first["model"]["version"], second["model"]["version"]) == ("1", "2")
        labels = [
            {"request_id": answer["request_id"], "index": i, "truth": truth[start + i]}
            for answer, start in ((first, 0), (second, 20))
            for i in range(20)
        ]
        deadline = time.monotonic() + 60
        while True:  # the new container reads the log back just after it is ready
            report = httpx.post(f"{url}/feedback", json=labels, timeout=30)
            assert report.status_code == 200, report.text
            if report.json()["not_found"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert report.json()["accepted"] + report.json()["relabelled"] == 40, report.text

        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"{url}/metrics", timeout=30).text
        accuracy = {
            s.labels["model_version"]: s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "mlops_model_quality" and s.labels["metric"] == "accuracy"
        }
        for version, answer, start in (("1", first, 0), ("2", second, 20)):
            right = sum(p == t for p, t in zip(answer["predictions"], truth[start:], strict=False))
            assert accuracy[version] == right / 20, text
        volume = f"mlops-{name}-predictions"

        def read_volume() -> dict[str, list[tuple[str, int]]]:
            out = docker_client.containers.run(
                built.v1.id,
                ["sh", "-c", f"cat {hardening.LOG_MOUNT}/predictions-*.jsonl"],
                volumes={volume: {"bind": hardening.LOG_MOUNT, "mode": "ro"}},
                remove=True,
                network_disabled=True,
            )
            logged = [json.loads(line) for line in out.decode().splitlines()]
            return {
                v: sorted((r["request_id"], r["index"]) for r in logged if r["version"] == v)
                for v in ("1", "2")
            }

        # The log is written off the request path (the writer comes every 250 ms, after the
        # new container's restore from the log): wait for v2's rows, not for a fixed time.
        deadline = time.monotonic() + 60
        by_version = read_volume()
        while len(by_version["2"]) < 20 and time.monotonic() < deadline:
            time.sleep(0.5)
            by_version = read_volume()
        assert by_version["1"] == sorted((first["request_id"], i) for i in range(20))
        assert by_version["2"] == sorted((second["request_id"], i) for i in range(20))

        # What `mlops retrain NAME --from-log` trains on: the log copied out of the serving
        # container, its labelled rows as training and held-out sets.
        from backends.lifecycle.log_export import training_sets

        assert containers.copy_prediction_log(docker_client, name, tmp_path / "log") >= 2
        sets = training_sets(tmp_path / "log", tmp_path / "sets")
        assert (sets.rows, sets.versions) == (40, ("1", "2"))
    finally:
        containers.remove_deployment(docker_client, name)
        with contextlib.suppress(Exception):
            docker_client.volumes.get(f"mlops-{name}-predictions").remove(force=True)


@pytest.mark.prometheus
def test_labels_through_the_router_reach_prometheus_and_mlops_monitor_per_version(
    built: Built, docker_client: Any
) -> None:
    """The whole chain on real containers: predict through the router → POST /feedback through
    the router → the container's gauge → Prometheus (scraping the router's port, found through
    the file_sd groups the console writes) → `mlops monitor --json`; after a switch the row
    shows the new version's own accuracy, from its own rows, not the old one's."""
    from backends.prometheus.discovery import scrape_targets, target_groups
    from backends.prometheus.prometheus_source import PrometheusSource
    from backends.prometheus.queries import Scope
    from console.cli.main import app

    prom = services.shared_prometheus().for_another_user()
    port = services.free_port()
    name = f"fbprom{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    rows = iris_frame()[FEATURES].values.tolist()
    truth = iris_frame()["target"].tolist()
    # Each version labels a different number of rows: a row attributed to the wrong version
    # shows in labelled_rows (30 for v1, 80 for v2, never 110), whatever the accuracies are.
    slices = {"1": (0, 30), "2": (60, 140)}

    def label(answer: dict[str, Any], start: int) -> None:
        labels = [
            {"request_id": answer["request_id"], "index": i, "truth": truth[start + i]}
            for i in range(len(answer["predictions"]))
        ]
        report = httpx.post(f"{url}/feedback", json=labels, timeout=30)
        assert report.status_code == 200 and report.json()["accepted"] == len(labels), report.text

    def point_prometheus_at_the_deployment() -> None:
        mine = [d for d in containers.list_deployments(docker_client) if d.name == name]
        prom.set_targets(target_groups(scrape_targets(mine)))

    def monitor_row(version: str, labelled: int) -> dict[str, Any]:
        source = PrometheusSource(prom.url, window="10s")
        eventually(  # a hang guard: Prometheus scrapes every second
            lambda: [
                r
                for r in source.snapshot(Scope(deployment=name)).rows
                if str(r.version) == version and r.labelled_rows == labelled
            ],
            f"{labelled} labelled rows of v{version} in Prometheus",
            timeout=120,
        )
        result = CliRunner().invoke(
            app, ["monitor", name, "--json"], env={"PROMETHEUS_URL": prom.url}
        )
        assert result.exit_code == 0, result.output
        shown = [r for r in json.loads(result.output)["rows"] if str(r["version"]) == version]
        assert len(shown) == 1, result.output
        return dict(shown[0])

    switch.deploy(docker_client, built.v1, name, port=port)
    try:
        point_prometheus_at_the_deployment()
        accuracy: dict[str, float] = {}  # computed here from each version's own answers
        for version, (start, stop) in slices.items():
            if version == "2":
                switch.deploy(docker_client, built.v2, name, port=port)
                point_prometheus_at_the_deployment()  # as `deploy up` does: the version label
            answer = httpx.post(f"{url}/predict", json={"data": rows[start:stop]}, timeout=30)
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"]["version"] == version
            predicted = answer.json()["predictions"]
            accuracy[version] = sum(
                p == t for p, t in zip(predicted, truth[start:stop], strict=True)
            ) / (stop - start)
            label(answer.json(), start)
            row = monitor_row(version, stop - start)
            assert row["version"] == int(version) and row["deployment"] == name
            assert row["quality"]["accuracy"] == pytest.approx(accuracy[version]), row
            assert row["labelled_rows"] == stop - start and row["label_coverage"] > 0, row
    finally:
        prom.targets_path.unlink(missing_ok=True)
        containers.remove_deployment(docker_client, name)
        with contextlib.suppress(Exception):
            docker_client.volumes.get(f"mlops-{name}-predictions").remove(force=True)


def _health(container: Any) -> str:
    container.reload()
    return str(container.attrs["State"].get("Health", {}).get("Status", "none"))
