"""The hooks receiver's decisions and HTTP answers, with a stand-in retraining (the real one is
tests/integration/test_hooks.py): what starts, what is dropped and why, what is refused."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from backends.errors import InvalidInput
from backends.lifecycle import hooks
from backends.lifecycle.hooks import Dispatcher, Target, parse_notification
from backends.lifecycle.hooks_http import MAX_BODY, hooks_app
from backends.records import RetrainOutcome, RetrainTrigger

TOKEN = "s3cret-token"


def alert(name: str = "MlopsFeatureDrift", status: str = "firing", **labels: str) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {"alertname": name, "severity": "warning", "deployment": "web", **labels},
        "annotations": {"summary": "drift"},
        "startsAt": "2026-12-02T00:40:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "abc",
    }


def note(*alerts: dict[str, Any], truncated: int = 0) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="MlopsFeatureDrift"}',
        "truncatedAlerts": truncated,
        "status": "firing",
        "receiver": "mlops-retrain",
        "groupLabels": {"alertname": "MlopsFeatureDrift"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://am",
        "alerts": list(alerts),
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Retrains:
    """Records each retraining; ``gate`` holds them until released (a slow training)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Target, RetrainTrigger]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, target: Target, trigger: RetrainTrigger) -> RetrainOutcome:
        self.calls.append((target, trigger))
        self.gate.wait(10)
        return RetrainOutcome(
            target.deployment,
            target.model,
            1,
            "r1",
            "drift",
            "r2",
            2,
            "ok",
            0.9,
            0.95,
            True,
            "challenger -> iris v2 (gate passed)",
            "/dev/null",
        )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def retrains() -> Retrains:
    return Retrains()


@pytest.fixture
def dispatcher(clock: Clock, retrains: Retrains) -> Dispatcher:
    known = {"web": Target("web", "http://127.0.0.1:1", "iris")}
    return Dispatcher(
        resolve=known.get,
        retrain=retrains,
        by="hooks@test",
        debounce=60,
        cooldown=600,
        clock=clock,
    )


def decide(dispatcher: Dispatcher, *alerts: dict[str, Any]) -> list[str]:
    decisions, _ = dispatcher.handle(parse_notification(json.dumps(note(*alerts)).encode()))
    dispatcher.wait(10)
    return [d.outcome for d in decisions]


def test_a_firing_drift_alert_starts_one_retraining_with_its_trigger(
    dispatcher: Dispatcher, retrains: Retrains
) -> None:
    assert decide(dispatcher, alert(feature="petal_length")) == ["started"]
    ((target, trigger),) = retrains.calls
    assert target.model == "iris" and target.deployment == "web"
    assert trigger.alert == "MlopsFeatureDrift" and trigger.labels["feature"] == "petal_length"
    assert trigger.starts_at == "2026-12-02T00:40:00Z" and trigger.by == "hooks@test"
    (done,) = dispatcher.status()["retrainings"]
    assert done["challenger"] == 2 and done["finished"] is not None


def test_what_starts_nothing(dispatcher: Dispatcher, retrains: Retrains) -> None:
    assert decide(
        dispatcher,
        alert(status="resolved"),
        alert("MlopsHighLatencyP99"),
        alert(deployment="nowhere"),
        {**alert(), "labels": {"alertname": "MlopsFeatureDrift"}},
    ) == ["resolved", "not a retraining alert", "unknown deployment", "no deployment label"]
    assert retrains.calls == []


def test_one_at_a_time_debounced_then_cooling_down(
    dispatcher: Dispatcher, retrains: Retrains, clock: Clock
) -> None:
    retrains.gate.clear()  # the first training is still running
    decisions, _ = dispatcher.handle(parse_notification(json.dumps(note(alert())).encode()))
    assert [d.outcome for d in decisions] == ["started"]
    # The quality alert of the same model, and a repeat: one retraining per model at a time.
    again, _ = dispatcher.handle(
        parse_notification(json.dumps(note(alert("MlopsModelQualityLow"), alert())).encode())
    )
    assert [d.outcome for d in again] == ["busy", "busy"]
    retrains.gate.set()
    dispatcher.wait(10)
    clock.now += 10
    assert decide(dispatcher, alert()) == ["cooling down"]
    clock.now += 600
    assert decide(dispatcher, alert()) == ["started"]
    assert len(retrains.calls) == 2


def test_a_burst_is_debounced_even_before_the_first_started(
    clock: Clock, retrains: Retrains
) -> None:
    known = {"web": Target("web", "u", "iris"), "web2": Target("web2", "u2", "iris")}
    d = Dispatcher(
        resolve=known.get, retrain=retrains, by="t", debounce=60, cooldown=0, clock=clock
    )
    assert decide(d, alert()) == ["started"]
    clock.now += 1  # the second deployment of the same model, a second later
    assert decide(d, alert(deployment="web2")) == ["debounced"]


def test_a_failed_retraining_is_reported_and_the_model_is_free_again(
    clock: Clock,
) -> None:
    def broken(target: Target, trigger: RetrainTrigger) -> RetrainOutcome:
        raise RuntimeError("training failed")

    d = Dispatcher(
        resolve={"web": Target("web", "u", "iris")}.get,
        retrain=broken,
        by="t",
        debounce=0,
        cooldown=0,
        clock=clock,
    )
    assert decide(d, alert()) == ["started"]
    assert d.status()["retrainings"][0]["outcome"] == "failed: training failed"
    clock.now += 1
    assert decide(d, alert()) == ["started"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"not json", "not JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"version": "3", "alerts": []}).encode(), "version '3'"),
        (json.dumps({"version": "4"}).encode(), "no alerts list"),
        (json.dumps({"version": "4", "alerts": [1]}).encode(), "alerts[0] is not an object"),
        (json.dumps(note({**alert(), "labels": {"a": 1}})).encode(), "map of strings"),
        (json.dumps(note({**alert(), "status": "odd"})).encode(), "not firing or resolved"),
        ("\udcff".encode("utf-8", "surrogateescape"), "not JSON"),
    ],
)
def test_a_body_that_is_not_alertmanagers_names_the_problem(body: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(says)):
        parse_notification(body)


# --------------------------------------------------------------------------- HTTP


@pytest.fixture
def http(dispatcher: Dispatcher) -> TestClient:
    return TestClient(hooks_app(dispatcher, TOKEN))


def post(http: TestClient, body: bytes | dict[str, Any], token: bytes | str = TOKEN) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    auth = token if isinstance(token, bytes) else token.encode()
    return http.post(
        "/hooks/alertmanager", content=raw, headers={"Authorization": b"Bearer " + auth}
    )


def test_http_decisions_are_200_and_name_each_alert(
    http: TestClient, dispatcher: Dispatcher
) -> None:
    r = post(http, note(alert(), alert(deployment="nowhere"), truncated=3))
    dispatcher.wait(10)
    assert r.status_code == 200
    doc = r.json()
    assert [d["outcome"] for d in doc["decisions"]] == ["started", "unknown deployment"]
    assert doc["decisions"][1]["deployment"] == "nowhere"
    assert "left out 3 alert(s)" in doc["warnings"][0]


@pytest.mark.parametrize(
    "token", ["wrong", "", "s3cret-token-and-more", "s3cret-tokén".encode(), b"\xff\xfe"]
)
def test_a_wrong_token_is_401_and_starts_nothing(
    http: TestClient, retrains: Retrains, token: bytes | str
) -> None:
    r = post(http, note(alert()), token)
    assert r.status_code == 401 and "token" in r.json()["error"]["message"]
    assert retrains.calls == []


def test_no_authorization_header_is_401(http: TestClient) -> None:
    r = http.post("/hooks/alertmanager", json=note(alert()))
    assert r.status_code == 401


def test_bad_bodies_are_400_and_oversized_413(http: TestClient, retrains: Retrains) -> None:
    r = post(http, b'{"hello": "world"}')
    assert (
        r.status_code == 400 and "not an Alertmanager notification" in r.json()["error"]["message"]
    )
    r = post(http, b"x" * (MAX_BODY + 1))
    assert r.status_code == 413 and "body over" in r.json()["error"]["message"]
    assert retrains.calls == []


def test_status_needs_the_token(http: TestClient) -> None:
    assert http.get("/status").status_code == 401
    ok = http.get("/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["cooldown_s"] == 600
    assert http.get("/health").json() == {"status": "ok"}


def test_the_targets_file_names_a_deployment_by_its_router_not_its_canary(tmp_path: Path) -> None:
    path = tmp_path / "targets.json"
    canary = {"deployment": "web", "model": "iris", "version": "4", "role": "canary"}
    stable = {"deployment": "web", "model": "iris", "version": "3", "alias": "champion"}
    path.write_text(
        json.dumps(
            [
                {"targets": ["127.0.0.1:9001"], "labels": canary},
                {"targets": ["127.0.0.1:8081"], "labels": stable},
            ]
        )
    )
    lookup = hooks.targets_file_lookup(path)
    assert lookup("web") == Target("web", "http://127.0.0.1:8081", "iris")
    assert lookup("api") is None
