"""Discovery: deployments → file_sd target groups, and the atomic targets file."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backends.errors import Unavailable
from backends.lifecycle import targets
from backends.prometheus import discovery
from backends.records import Deployment, ScrapeTarget


def deployment(name: str, **over: object) -> Deployment:
    fields: dict[str, object] = {
        "name": name,
        "model": "iris",
        "version": 3,
        "alias": "champion",
        "run_id": "r1",
        "image": "mlops/iris:3",
        "container_id": "abc",
        "state": "running",
        "health": "healthy",
        "host": "127.0.0.1",
        "port": 8081,
        "started_at": datetime(2025, 1, 1, tzinfo=UTC),
    }
    fields.update(over)
    return Deployment(**fields)  # type: ignore[arg-type]


def test_scrape_targets_keep_reachable_deployments_sorted_by_name() -> None:
    found = discovery.scrape_targets(
        [
            deployment("web", port=8082),
            deployment("api", host="0.0.0.0", port=8081),
            deployment("v6", host="::1", port=8083),
            deployment("no-port", port=None),
            deployment("stopped", state="exited"),
            deployment("flapping", state="restarting", port=8084),
        ]
    )
    assert [(t.deployment, t.url) for t in found] == [
        ("api", "http://127.0.0.1:8081"),  # published on every interface: reached on loopback
        ("flapping", "http://127.0.0.1:8084"),  # kept: Prometheus must see it down and alert
        ("v6", "http://[::1]:8083"),
        ("web", "http://127.0.0.1:8082"),
    ]
    assert found[2].address == "[::1]:8083"


def test_target_groups_carry_model_version_alias_and_deployment() -> None:
    groups = discovery.target_groups(discovery.scrape_targets([deployment("web", alias="")]))
    assert groups == [
        {
            "targets": ["127.0.0.1:8081"],
            "labels": {"model": "iris", "version": "3", "alias": "", "deployment": "web"},
        }
    ]


def test_a_canary_is_a_target_of_its_own_labelled_role_canary(tmp_path: Path) -> None:
    canary = ScrapeTarget(
        "http://127.0.0.1:9001", deployment="web", model="iris", version=4, role="canary"
    )
    path = tmp_path / "targets.json"
    written = discovery.refresh_targets([deployment("web", alias="")], path, [canary])
    groups = json.loads(path.read_text())
    assert [g["targets"] for g in groups] == [["127.0.0.1:8081"], ["127.0.0.1:9001"]]
    assert groups[1]["labels"] == {
        "model": "iris",
        "version": "4",
        "alias": "",
        "deployment": "web",
        "role": "canary",
    }
    assert "role" not in groups[0]["labels"]  # the stable version's series keep their labels
    assert [t.role for t in written.targets] == ["", "canary"]


def test_targets_file_is_written_atomically_and_only_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "sd" / "mlops.json"
    nasty = ScrapeTarget("http://h:1", deployment="d", model='we"ird\\name\n', version="1")
    groups = discovery.target_groups([nasty])
    assert discovery.write_groups(groups, path) is True
    assert json.loads(path.read_text()) == groups  # the exact label values survive
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    before = path.stat().st_mtime_ns
    assert discovery.write_groups(groups, path) is False
    assert path.stat().st_mtime_ns == before
    assert discovery.write_groups([], path) is True
    assert json.loads(path.read_text()) == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["mlops.json"]  # no temp files left


def test_refresh_targets_defaults_to_the_configured_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_TARGETS_FILE", str(tmp_path / "t.json"))
    written = discovery.refresh_targets([deployment("web"), deployment("gone", state="exited")])
    assert written.path == str(tmp_path / "t.json") and written.changed
    assert [t.deployment for t in written.targets] == ["web"]
    assert len(json.loads((tmp_path / "t.json").read_text())) == 1
    assert discovery.refresh_targets([deployment("web")]).changed is False


def test_default_path_follows_xdg_state_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_TARGETS_FILE", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert (
        discovery.default_targets_path() == tmp_path / "mlops-console" / "prometheus-targets.json"
    )


def test_without_a_docker_engine_listing_deployments_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable, match="not reachable"):
        targets.running_deployments(f"unix://{tmp_path}/no-docker.sock")


def test_deploy_commands_refresh_from_their_docker_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    client = object()
    monkeypatch.delenv("MLOPS_ENGINE", raising=False)
    monkeypatch.setattr(
        targets.containers,
        "list_deployments",
        lambda c: [deployment("web")] if c is client else [],
    )
    canary = ScrapeTarget("http://127.0.0.1:9", deployment="web", version=4, role="canary")
    monkeypatch.setattr(
        targets.containers, "canary_targets", lambda c: [canary] if c is client else []
    )
    written = targets.refresh_from_engine(client, tmp_path / "t.json")
    assert [(t.deployment, t.role) for t in written.targets] == [("web", ""), ("web", "canary")]
    assert written.changed
    # On a swarm: its deployments' routers (each router's /metrics is every task's), and a
    # canary service's figures through its router's /-/router/canary/metrics.
    monkeypatch.setenv("MLOPS_ENGINE", "swarm")
    monkeypatch.setattr(
        targets.swarm, "list_deployments", lambda c: [deployment("svc")] if c is client else []
    )
    through_router = ScrapeTarget(
        "http://127.0.0.1:8080",
        deployment="svc",
        version=5,
        role="canary",
        metrics_path="/-/router/canary/metrics",
    )
    monkeypatch.setattr(
        targets.swarm, "canary_targets", lambda c: [through_router] if c is client else []
    )
    path = tmp_path / "t.json"
    written = targets.refresh_from_engine(client, path)
    assert [(t.deployment, t.role) for t in written.targets] == [("svc", ""), ("svc", "canary")]
    groups = json.loads(path.read_text())
    canary_group = next(g for g in groups if g["labels"].get("role") == "canary")
    assert canary_group["targets"] == ["127.0.0.1:8080"]
    assert canary_group["labels"]["__metrics_path__"] == "/-/router/canary/metrics"
    assert "__metrics_path__" not in next(g for g in groups if "role" not in g["labels"])["labels"]


def test_an_unreachable_docker_engine_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"unix://{os.path.join(os.sep, 'nonexistent', 'docker.sock')}"
    with pytest.raises(Unavailable):
        targets.running_deployments(missing)
