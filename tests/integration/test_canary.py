"""Canary releases on the real engine, under steady load through the router: a healthy canary
is stepped up and promoted, a faulty and a slow one are aborted within interval times the
failure limit, and the stable path fails no request throughout."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from backends.docker import containers, switch
from backends.lifecycle import build
from backends.lifecycle.handles import Handles
from backends.records import ServingImage
from tests import services
from tests.cli_load import mlops
from tests.models import log_rule_version
from tests.server.conftest import FEATURES, iris_frame
from tests.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.mlflow_server]

INTERVAL = 3  # seconds between evaluations: short, the load is steady and dense
# Latency against the stable version's own, measured in the same interval: the canary is judged
# beside its peer, not against a clock this machine may not keep (the slow one is ~100x).
CHECKS = ["--check", "error_ratio<0.02", "--check", "p99<=stable*10"]


@dataclass
class Models:
    tracking_uri: str
    name: str
    images: dict[str, ServingImage]  # behaviour → its version's image
    versions: dict[str, str]


@pytest.fixture(scope="module")
def models(
    mlflow_server: services.MlflowServer,
    docker_client: Any,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Models]:
    import mlflow
    from mlflow.tracking import MlflowClient

    environment = pytest.MonkeyPatch()
    environment.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    mlflow.set_tracking_uri(mlflow_server.url)
    name = f"canary-{os.getpid()}"
    experiment = MlflowClient(mlflow_server.url).create_experiment(name)
    tmp = tmp_path_factory.mktemp("canary-models")
    h = Handles(mlflow_server.url, docker=docker_client)
    versions, images = {}, {}
    for behaviour in ("plain", "healthy", "fails", "slow", "differs", "broken"):
        rule = "plain" if behaviour == "healthy" else behaviour
        version, _ = log_rule_version(experiment, name, rule, tmp)
        versions[behaviour] = version
        images[behaviour] = build.build(h, f"{name}/{version}", base_image=base_image).image
    yield Models(mlflow_server.url, name, images, versions)
    environment.undo()
    for deployment in containers.list_deployments(docker_client):
        if deployment.model == name:
            containers.remove_deployment(docker_client, deployment.name)
    for image in images.values():
        docker_client.images.remove(image.id, force=True)


@dataclass
class Load:
    """Steady clients through the router: every answer's status and the version that gave it
    (a model error's body names no version: those are told apart by the servers' counts)."""

    url: str
    answers: list[tuple[int, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, threads: int = 4, *, labels: bool = False) -> list[threading.Thread]:
        """``labels``: each answer's truth is sent back through the router (`POST /feedback`
        with the answer's request id), as a labelling service would."""
        frame = iris_frame()
        rows, truths = frame[FEATURES].values.tolist(), frame["target"].tolist()

        def client(offset: int) -> None:
            with httpx.Client(timeout=30) as http:
                i = offset
                while not self.stop.is_set():
                    row = rows[i % len(rows)]
                    i += 7
                    try:
                        r = http.post(f"{self.url}/predict", json={"data": [row]})
                        answer = r.json() if r.is_success else {}
                        version = answer.get("model", {}).get("version", "")
                        self.answers.append((r.status_code, str(version)))
                        if labels and answer:
                            truth = truths[(i - 7) % len(rows)]
                            label = {"request_id": answer["request_id"], "truth": truth}
                            http.post(f"{self.url}/feedback", json=label)
                    except httpx.HTTPError:
                        self.answers.append((0, ""))
                    self.stop.wait(services.LOAD_PACE)

        started = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(threads)]
        for t in started:
            t.start()
        return started


def server_errors(docker_client: Any, name: str, version: str) -> float:
    """5xx answers the model container of ``version`` counted itself (its own /metrics)."""
    from backends.prometheus.exposition import parse_exposition

    found = [
        c
        for c in containers.model_containers(docker_client, name)
        + containers.canary_containers(docker_client, name)
        if c.labels.get("org.mlops-console.version") == version
    ]
    total = 0.0
    for c in found:
        port = c.labels["org.mlops-console.port"]
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        for labels, value in parse_exposition(text).values("mlops_requests_total"):
            if labels.get("status", "").startswith("5"):
                total += value
    return total


def deploy_stable(models: Models, docker_client: Any, tag: str) -> tuple[str, str]:
    name = f"{tag}{os.getpid()}"
    port = services.free_port()
    switch.deploy(docker_client, models.images["plain"], name, port=port, alias="champion")
    return name, f"http://127.0.0.1:{port}"


def env_for(
    models: Models, tmp_path: Path, prometheus: services.PrometheusServer | None = None
) -> dict[str, str]:
    """The command's environment; with ``prometheus``, its figures come from that server,
    which reads the targets file the command keeps."""
    env = {"MLFLOW_TRACKING_URI": models.tracking_uri, "MLOPS_STATE_DIR": str(tmp_path)}
    # The release's file and its worker's log: what a release that never ended leaves to read.
    services.remember_state_dir("canary state", tmp_path / "canary")
    if prometheus is not None:
        env.update(PROMETHEUS_URL=prometheus.url, MLOPS_TARGETS_FILE=str(prometheus.targets_path))
    return env


def prometheus_saw_the_canary(prometheus: services.PrometheusServer, name: str) -> bool:
    """Whether Prometheus scraped deployment ``name``'s canary container as such."""
    query = f'count_over_time(up{{deployment="{name}",role="canary"}}[10m])'
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=10)
    return bool(answer.json()["data"]["result"])


def targets_file_roles(prometheus: services.PrometheusServer, name: str) -> list[str]:
    groups = json.loads(prometheus.targets_path.read_text())
    return [g["labels"].get("role", "") for g in groups if g["labels"]["deployment"] == name]


def start(
    models: Models,
    name: str,
    behaviour: str,
    env: dict[str, str],
    *extra: str,
    interval: float = INTERVAL,
) -> subprocess.CompletedProcess[str]:
    """`mlops deploy canary` in the foreground: it follows the analysis to its end."""
    ref = f"{models.name}/{models.versions[behaviour]}"
    return mlops(
        "deploy", "canary", name, ref, "--steps", "20,50,100", "--interval", f"{interval:g}s",
        *CHECKS, "--failure-limit", "2", "--yes", "--json", *extra, env=env,
    )  # fmt: skip


def paused_release(name: str, env: dict[str, str], why: str) -> dict[str, Any]:
    """The release of ``name`` as `mlops deploy canary NAME --json` shows it, once paused."""

    def shown() -> dict[str, Any] | None:
        doc: dict[str, Any] = json.loads(mlops("deploy", "canary", name, "--json", env=env).stdout)
        return doc if doc["status"] == "paused" else None

    found: dict[str, Any] = eventually(shown, f"the analysis to pause {why}", timeout=120)
    return found


def test_a_healthy_canary_is_stepped_up_and_promoted_with_no_failed_request(
    models: Models, docker_client: Any, tmp_path: Path, prometheus: services.PrometheusServer
) -> None:
    """Judged on figures from Prometheus (PROMETHEUS_URL set): the canary container is one of
    its targets, labelled role canary, while the release runs, and not after."""
    from mlflow.tracking import MlflowClient

    name, url = deploy_stable(models, docker_client, "cy")
    load = Load(url)
    threads = load.run()
    try:
        done = start(models, name, "healthy", env_for(models, tmp_path, prometheus))
        time.sleep(1.0)  # requests sent after the promotion returned
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert (outcome["status"], outcome["weight"]) == ("promoted", 100)
    actions = [d["action"] for d in outcome["history"]]
    assert actions == ["step_up", "promote"], actions  # 20 → 50, then promoted from 50
    verdicts = [r["verdict"] for d in outcome["history"] for r in d["results"]]
    assert verdicts == ["pass"] * 4  # both checks passed at both evaluations
    healthy = models.versions["healthy"]
    assert {s for s, _ in load.answers} == {200}, sorted({s for s, _ in load.answers})
    by_version = Counter(v for _, v in load.answers)
    print(f"healthy canary (figures from Prometheus): {len(load.answers)} answers, all 200,")
    print(f"  by version {dict(by_version)}, decisions {actions}")
    assert {v for _, v in load.answers} == {models.versions["plain"], healthy}
    assert load.answers[-1][1] == healthy  # after the promotion only the new stable answers
    (ps,) = [d for d in containers.list_deployments(docker_client) if d.name == name]
    assert str(ps.version) == healthy
    assert not containers.canary_containers(docker_client, name)
    assert len(containers.model_containers(docker_client, name)) == 1
    tags = MlflowClient(models.tracking_uri).get_registered_model(models.name).tags
    stream = [json.loads(v) for k, v in tags.items() if f"deploy/{name}." in k]
    reasons = [e["reason"] for e in stream if e["action"] == "canary"]
    assert any(r.startswith("canary v") and "started at 20 %" in r for r in reasons)
    assert any(f"figures from Prometheus {prometheus.url}" in r for r in reasons), reasons
    assert any("promoted" in r.lower() for r in reasons), reasons
    assert prometheus_saw_the_canary(prometheus, name)
    assert targets_file_roles(prometheus, name) == [""]  # the canary's target went with it
    containers.remove_deployment(docker_client, name)


@pytest.mark.parametrize(("behaviour", "source"), [("fails", "prometheus"), ("slow", "scrape")])
def test_a_faulty_canary_is_aborted_and_the_stable_path_fails_nothing(
    models: Models,
    docker_client: Any,
    tmp_path: Path,
    prometheus: services.PrometheusServer,
    behaviour: str,
    source: str,
) -> None:
    """One judged on Prometheus' figures, one on the direct scrape (no PROMETHEUS_URL)."""
    env = env_for(models, tmp_path, prometheus if source == "prometheus" else None)
    name, url = deploy_stable(models, docker_client, f"cx{behaviour[0]}")
    load = Load(url)
    # A slow canary holds each client that drew it for a second: enough clients, and an
    # interval long enough, that it still answers the few requests an evaluation needs (else
    # the analysis cannot judge it and rightly pauses for a person instead).
    threads = load.run(threads=12)
    try:
        done = start(models, name, behaviour, env, interval=2 * INTERVAL)
        time.sleep(1.0)
        after_abort = len(load.answers)
        time.sleep(1.0)
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert (outcome["status"], outcome["weight"]) == ("aborted", 0)
    actions = [d["action"] for d in outcome["history"]]
    assert actions == ["fail_count", "abort"], actions  # exactly the failure limit
    # Aborted by the analysis at the failure limit's evaluation: the second one (counted, not
    # timed: each comes one interval after the last).
    assert [d["by"] for d in outcome["history"]] == ["analysis", "analysis"]
    failed = {"fails": "error_ratio", "slow": "p99"}[behaviour]
    for decision in outcome["history"]:
        verdicts = {r["check"].split("<")[0]: r["verdict"] for r in decision["results"]}
        assert verdicts[failed] == "fail", decision
    stable = models.versions["plain"]
    assert server_errors(docker_client, name, stable) == 0  # the stable path failed nothing
    statuses = {s for s, _ in load.answers}
    # Only the canary's own model errors reach a client: no refused connection, no router error.
    assert statuses == ({200, 500} if behaviour == "fails" else {200}), statuses
    assert router_errors(docker_client, name) == 0

    later = load.answers[after_abort:]
    print(f"{behaviour} canary ({source}): {len(load.answers)} answers, statuses")
    print(f"  {sorted((s, sum(1 for a, _ in load.answers if a == s)) for s in statuses)},")
    print(f"  decisions {actions}, 0 server errors on stable v{stable}")
    assert later and all((s, v) == (200, stable) for s, v in later)  # all back on stable
    (ps,) = [d for d in containers.list_deployments(docker_client) if d.name == name]
    assert str(ps.version) == stable
    assert not containers.canary_containers(docker_client, name)
    if source == "prometheus":
        assert prometheus_saw_the_canary(prometheus, name)
        assert targets_file_roles(prometheus, name) == [""]
    containers.remove_deployment(docker_client, name)


def test_figures_from_a_prometheus_that_stops_answering_pause_the_release(
    models: Models, docker_client: Any, tmp_path: Path
) -> None:
    """A Prometheus that does not answer refuses the start (exit 3, nothing started); one that
    stops answering during the release leaves its checks without figures: paused, saying so."""
    name, url = deploy_stable(models, docker_client, "cp")
    other = f"{models.name}/{models.versions['healthy']}"
    nowhere = dict(
        env_for(models, tmp_path), PROMETHEUS_URL=f"http://127.0.0.1:{services.free_port()}"
    )
    refused = mlops("deploy", "canary", name, other, "--check", "p99<1", "--yes", env=nowhere)
    assert refused.returncode == 3 and "prometheus" in refused.stderr.lower(), refused.stderr
    assert not containers.canary_containers(docker_client, name)

    (tmp_path / "prometheus").mkdir()
    private = services.start_prometheus(tmp_path / "prometheus")
    env = env_for(models, tmp_path, private)
    load = Load(url)
    threads = load.run(threads=4)
    try:
        # A check the healthy canary fails and a failure limit it never reaches: the release
        # keeps running on Prometheus' figures however many evaluations come before the stop
        # (on a loaded machine, several), and only Prometheus going away can pause it.
        started = mlops(
            "deploy", "canary", name, other, "--steps", "20,100", "--interval", f"{INTERVAL}s",
            "--check", "error_ratio>0.5", "--failure-limit", "1000", "--yes", "--detach",
            "--json", env=env,
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert json.loads(started.stdout)["figures_source"] == f"Prometheus {private.url}"
        assert targets_file_roles(private, name) == ["", "canary"]
        services.stop(private)
        paused = paused_release(name, env, "when Prometheus stops answering")
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    line = paused["history"][-1]["line"]
    assert "no figures" in line and "Prometheus" in line and private.url in line, line
    # Before it, only failed evaluations on figures Prometheus gave (the error ratio, 0).
    earlier = paused["history"][:-1]
    assert all(d["action"] == "fail_count" for d in earlier), earlier
    assert all(r["canary"] == 0 for d in earlier for r in d["results"]), earlier
    aborted = mlops("deploy", "canary", name, "--abort", "--yes", "--json", env=env)
    assert aborted.returncode == 0, aborted.stderr
    assert json.loads(aborted.stdout)["status"] == "aborted"
    assert not containers.canary_containers(docker_client, name)
    assert targets_file_roles(private, name) == [""]
    assert {s for s, _ in load.answers} == {200}
    containers.remove_deployment(docker_client, name)


def test_refused_before_anything_starts_and_a_pause_waits_for_a_person(
    models: Models, docker_client: Any, tmp_path: Path
) -> None:
    name, _ = deploy_stable(models, docker_client, "cz")
    env = env_for(models, tmp_path)
    same = f"{models.name}/{models.versions['plain']}"
    other = f"{models.name}/{models.versions['healthy']}"
    refusals = {
        "already serves": ["deploy", "canary", name, same, "--check", "p99<1", "--yes"],
        "steps must rise": ["deploy", "canary", name, other, "--steps", "50,20,100",
                            "--check", "p99<1", "--yes"],
        "unknown metric": ["deploy", "canary", name, other, "--check", "latency<1", "--yes"],
    }  # fmt: skip
    for words, args in refusals.items():
        proc = mlops(*args, env=env)
        assert proc.returncode == 2, (words, proc.stderr)
        assert words in proc.stderr.lower(), (words, proc.stderr)
    assert not containers.canary_containers(docker_client, name)  # nothing was started

    # No traffic: nothing to judge, so the analysis pauses for a person.
    proc = mlops(
        "deploy", "canary", name, other, "--steps", "20,100", "--interval", f"{INTERVAL}s",
        "--check", "error_ratio<0.01", "--yes", "--detach", "--json", env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    paused = paused_release(name, env, "without traffic")
    assert "inconclusive" in paused["history"][-1]["line"]
    blocked = mlops("deploy", "up", other, "--name", name, "--yes", env=env)
    assert blocked.returncode == 5 and "canary" in blocked.stderr  # no switch under a release
    promoted = mlops("deploy", "canary", name, "--promote", "--yes", "--json", env=env)
    assert promoted.returncode == 0, promoted.stderr
    assert json.loads(promoted.stdout)["status"] == "promoted"
    (ps,) = [d for d in containers.list_deployments(docker_client) if d.name == name]
    assert str(ps.version) == models.versions["healthy"]
    assert not containers.canary_containers(docker_client, name)
    gone = mlops("deploy", "canary", name, "--abort", "--yes", env=env)
    assert gone.returncode == 4 and "no canary or shadow to abort" in gone.stderr
    containers.remove_deployment(docker_client, name)


def test_a_shadow_reports_the_disagreement_the_two_models_are_known_to_have(
    models: Models, docker_client: Any, tmp_path: Path
) -> None:
    name, url = deploy_stable(models, docker_client, "cs")
    env = env_for(models, tmp_path)
    shadow = f"{models.name}/{models.versions['differs']}"
    proc = mlops("deploy", "canary", name, shadow, "--mirror", "100", "--yes", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    rows = iris_frame()[FEATURES].values.tolist()  # 150 rows, 50 of them setosa
    plain = httpx.post(f"{url}/predict", json={"data": rows}, timeout=60).json()
    for _ in range(3):
        answer = httpx.post(f"{url}/predict", json={"data": rows}, timeout=60).json()
        assert answer["predictions"] == plain["predictions"]  # clients get the stable's answers
        assert answer["model"]["version"] == models.versions["plain"]

    def compared() -> dict[str, Any] | None:
        shown = mlops("deploy", "canary", name, "--json", env=env)
        doc: dict[str, Any] = json.loads(shown.stdout) if shown.returncode == 0 else {}
        return doc if doc.get("window_rows") == 600 else None

    figures = eventually(compared, "the router to compare all 600 mirrored rows", timeout=120)
    # The shadow answers every setosa row as versicolor: a third of the rows, exactly.
    assert figures["disagreement_ratio"] == pytest.approx(50 / 150)
    print(f"shadow: {figures['window_rows']} rows compared, disagreement")
    print(f"  {figures['disagreement_ratio']:.4f} (known: 50/150)")
    assert (figures["errors"], figures["dropped"], figures["copies"]) == (0, 0, 4)
    stopped = mlops("deploy", "canary", name, "--abort", "--yes", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert not containers.canary_containers(docker_client, name)
    history = mlops("models", "history", models.name, "--json", env=env)
    assert f"shadow v{models.versions['differs']} stopped" in history.stdout, history.stdout[-800:]
    after = httpx.post(f"{url}/predict", json={"data": rows[:3]}, timeout=30)
    assert after.status_code == 200
    # Again, and this time it is promoted: switched in as any deploy, the mirror gone.
    again = mlops("deploy", "canary", name, shadow, "--mirror", "20", "--yes", env=env)
    assert again.returncode == 0, again.stderr
    promoted = mlops("deploy", "canary", name, "--promote", "--yes", env=env)
    assert promoted.returncode == 0, promoted.stderr
    answer = httpx.post(f"{url}/predict", json={"data": rows}, timeout=60).json()
    assert answer["model"]["version"] == models.versions["differs"]
    assert answer["predictions"][:50] == [1] * 50  # the shadow's own rule now answers
    assert not containers.canary_containers(docker_client, name)
    containers.remove_deployment(docker_client, name)


def router_errors(docker_client: Any, name: str) -> float:
    """Requests the router could not get answered by an upstream (its own count)."""
    from backends.prometheus.exposition import parse_exposition

    router = containers.router_of(docker_client, name)
    assert router is not None
    port = router.labels["org.mlops-console.port"]
    text = httpx.get(f"http://127.0.0.1:{port}/-/router/metrics", timeout=10).text
    return sum(v for _, v in parse_exposition(text).values("mlops_router_upstream_errors_total"))


def test_a_less_accurate_canary_is_aborted_on_labels_that_come_back_through_the_router(
    models: Models, docker_client: Any, tmp_path: Path
) -> None:
    """`accuracy>=stable-0.02` judged on real labels: each answer's truth goes back through the
    router, which hands it to the version that answered; the canary that calls every setosa
    versicolor (about a third of the rows wrong) fails it against the stable's own accuracy."""
    name, url = deploy_stable(models, docker_client, "ca")
    load = Load(url)
    threads = load.run(threads=6, labels=True)
    try:
        ref = f"{models.name}/{models.versions['differs']}"
        done = mlops(
            "deploy", "canary", name, ref, "--steps", "30,60,100", "--interval",
            f"{2 * INTERVAL}s", "--check", "accuracy>=stable-0.02", "--failure-limit", "2",
            "--yes", "--json", env=env_for(models, tmp_path),
        )  # fmt: skip
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    outcome = json.loads(done.stdout)
    assert [d["action"] for d in outcome["history"]] == ["fail_count", "abort"]
    for decision in outcome["history"]:
        (result,) = decision["results"]
        assert result["verdict"] == "fail", decision
        # The stable's rule is right on ~96 % of iris, the canary's on ~63 %.
        assert result["stable"] > 0.9 and result["canary"] < 0.8, result
    assert {s for s, _ in load.answers} == {200}
    containers.remove_deployment(docker_client, name)


def test_a_canary_that_never_becomes_ready_changes_nothing(
    models: Models, docker_client: Any, tmp_path: Path
) -> None:
    name, url = deploy_stable(models, docker_client, "cb")
    ref = f"{models.name}/{models.versions['broken']}"
    proc = mlops("deploy", "canary", name, ref, "--check", "p99<1", "--yes", env=env_for(
        models, tmp_path
    ))  # fmt: skip
    assert proc.returncode != 0, proc.stdout
    assert "cannot load where it is served" in proc.stderr  # its last log lines, said
    assert not containers.canary_containers(docker_client, name)
    assert httpx.get(f"{url}/-/router/state", timeout=10).json()["canary"] is None
    assert not (tmp_path / "canary" / f"{name}.json").exists()  # no release was started
    answer = httpx.post(f"{url}/predict", json={"data": [[5.1, 3.5, 1.4, 0.2]]}, timeout=30)
    assert answer.json()["model"]["version"] == models.versions["plain"]
    containers.remove_deployment(docker_client, name)


def test_a_canary_of_a_deployment_that_follows_its_alias_moves_the_alias_through_the_gate(
    models: Models, docker_client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(models.tracking_uri)
    client.set_registered_model_alias(models.name, "champion", models.versions["plain"])
    monkeypatch.setenv("MLOPS_FOLLOW_INTERVAL", "2")  # the stable reloads soon after the move
    name, port = f"cf{os.getpid()}", services.free_port()
    switch.deploy(
        docker_client,
        models.images["plain"],
        name,
        port=port,
        alias="champion",
        follow_alias_ref=f"{models.name}@champion",
        tracking_uri=models.tracking_uri,
    )
    load = Load(f"http://127.0.0.1:{port}")
    threads = load.run()
    try:
        done = start(models, name, "healthy", env_for(models, tmp_path))
        time.sleep(1.0)
    finally:
        load.stop.set()
        for t in threads:
            t.join()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "promoted"
    healthy = models.versions["healthy"]
    moved = client.get_model_version_by_alias(models.name, "champion")
    assert moved.version == healthy  # the alias moved, through the gate
    tags = client.get_registered_model(models.name).tags
    moves = [json.loads(v) for k, v in tags.items() if k.startswith("mlops.history.champion.")]
    assert any("canary analysis of" in m["reason"] for m in moves), moves
    assert {s for s, _ in load.answers} == {200}
    assert load.answers[-1][1] == healthy  # the stable reloaded the new champion
    (ps,) = [d for d in containers.list_deployments(docker_client) if d.name == name]
    assert ps.follow_alias and str(ps.version) == healthy
    assert not containers.canary_containers(docker_client, name)
    containers.remove_deployment(docker_client, name)
