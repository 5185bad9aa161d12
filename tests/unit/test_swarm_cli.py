"""What a swarm context refuses before any engine is asked (exit 2, naming what to use
instead), and `deploy scale` on one engine. The swarm itself: tests/integration/test_swarm.py."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from console.cli.main import app


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing answers there
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.delenv("MLOPS_READ_ONLY", raising=False)
    monkeypatch.delenv("MLOPS_CONTEXT", raising=False)
    return monkeypatch


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_scaling_on_one_engine_is_a_usage_error(engine: pytest.MonkeyPatch) -> None:
    engine.delenv("MLOPS_ENGINE", raising=False)
    code, out = run("deploy", "scale", "iris", "3")
    assert code == 2 and "scaling needs a swarm context" in out


@pytest.mark.parametrize("count", ["0", "101"])
def test_a_replica_count_out_of_range_is_a_usage_error(
    engine: pytest.MonkeyPatch, count: str
) -> None:
    engine.setenv("MLOPS_ENGINE", "swarm")
    code, out = run("deploy", "up", "iris/1", "--replicas", count, "-y")
    assert code == 2 and "--replicas" in out


def test_replicas_on_one_engine_are_refused_before_anything_runs(
    engine: pytest.MonkeyPatch,
) -> None:
    engine.delenv("MLOPS_ENGINE", raising=False)
    # Before the registry is asked (it is down here: that would be exit 3) or anything built.
    code, out = run("deploy", "up", "iris/1", "--replicas", "3", "-y")
    assert code == 2 and "--replicas 3 needs a swarm context" in " ".join(out.split())


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ("deploy", "up", "iris@champion", "--follow-alias", "-y"),
            "following an alias is not supported on a swarm context yet",
        ),
    ],
)
def test_what_a_swarm_cannot_do_yet_is_refused_naming_it(
    engine: pytest.MonkeyPatch, args: tuple[str, ...], says: str
) -> None:
    engine.setenv("MLOPS_ENGINE", "swarm")
    code, out = run(*args)
    assert code == 2, out
    assert says in " ".join(out.split())


def test_an_unknown_engine_is_a_usage_error(engine: pytest.MonkeyPatch) -> None:
    engine.setenv("MLOPS_ENGINE", "kubernetes")
    code, out = run("deploy", "ps")
    assert code == 2 and "MLOPS_ENGINE='kubernetes' is not an engine" in " ".join(out.split())


def test_a_name_too_long_for_a_swarm_service_is_refused_saying_how_long_it_may_be() -> None:
    from backends.docker import swarm
    from backends.errors import InvalidInput

    swarm.check_service_name("a" * 48, 12)  # mlops-…-v12-xxxx: 63 characters
    with pytest.raises(InvalidInput) as caught:
        swarm.check_service_name("a" * 50, 12)
    assert "at most 48 with --name" in caught.value.message


def test_a_swarm_plan_says_services_replicas_and_where_the_image_comes_from() -> None:
    from datetime import UTC, datetime

    from backends.records import Deployment, DeployPlan, ModelVersion, TakeDownPlan
    from console.plans import deploy_summary, take_down_summary

    version = ModelVersion(
        name="iris",
        version=2,
        run_id="r2",
        metrics={},
        aliases=(),
        tags={},
        created=datetime.now(UTC),
        status="READY",
        stage=None,
        source="s",
    )
    current = Deployment(
        "iris",
        "iris",
        1,
        "",
        "r1",
        "mlops/iris:v1",
        "abc",
        "running",
        "healthy",
        "127.0.0.1",
        8080,
        None,
    )
    plan = DeployPlan(
        "iris/2",
        version,
        "",
        "iris",
        "127.0.0.1",
        8080,
        False,
        current,
        None,
        engine="swarm",
        image_registry="127.0.0.1:5000",
    )
    text = deploy_summary(plan)
    assert "replacing v1 on the swarm" in text and "v1's service is removed" in text
    assert "as many tasks as v1's" in text
    assert "pushed to 127.0.0.1:5000 first: the services run it by digest" in text
    down = take_down_summary(
        TakeDownPlan("iris", current, ("mlops-iris", "mlops-iris-v1-ab12"), engine="swarm")
    )
    assert "services: mlops-iris, mlops-iris-v1-ab12" in down


def test_a_failed_swarm_change_names_the_nodes_by_name_and_a_node_not_ready() -> None:
    """What `deploy up` says when replicas do not come up: the nodes their tasks failed on by
    host name, and a node that went away (down, unknown) by name and state."""
    from collections import Counter
    from types import SimpleNamespace

    from backends.docker.swarm import _failure_text

    nodes = [
        {"ID": "a" * 25, "Description": {"Hostname": "ops-1"}, "Status": {"State": "ready"}},
        {"ID": "b" * 25, "Description": {"Hostname": "ops-2"}, "Status": {"State": "down"}},
    ]
    api = SimpleNamespace(nodes=lambda: nodes, service_logs=lambda *a, **k: [b"boom\n"])
    client = SimpleNamespace(api=api)
    service = SimpleNamespace(id="s1", name="mlops-web-v2-ab12")
    failures = [
        {"NodeID": "a" * 25, "Status": {"State": "failed", "Err": "exit 1"}},
        {"NodeID": "b" * 25, "Status": {"State": "failed", "Err": "exit 1"}},
        {"Status": {"State": "rejected", "Err": "no suitable node"}},
    ]
    text = _failure_text(client, service, "kept failing", failures, Counter(failed=2))
    assert "on node(s) ops-1, ops-2 (down);" in text
    assert "node(s) not ready: ops-2 (down)" in text
    assert "boom" in text and "no suitable node" in text
    quiet = SimpleNamespace(api=SimpleNamespace(nodes=lambda: 1 / 0, service_logs=api.service_logs))
    assert "on node(s) aaaaaaaaaaaa;" in _failure_text(quiet, service, "x", failures[:1], Counter())
    # Time ran out with tasks still on their way: each named with its node and state (a node
    # that stopped answering holds them there before Swarm marks it down).
    tasks = [
        {"NodeID": "a" * 25, "DesiredState": "running", "Status": {"State": "running"}},
        {"NodeID": "b" * 25, "DesiredState": "running", "Status": {"State": "starting"}},
        {"NodeID": "b" * 25, "DesiredState": "running", "Status": {"State": "starting"}},
        {"NodeID": "b" * 25, "DesiredState": "shutdown", "Status": {"State": "assigned"}},
    ]
    late = _failure_text(client, service, "has 1 of 3", [], Counter(), tasks)
    assert "not running yet: 2 on ops-2 (down) [starting]" in late, late
