"""MLflow's registry webhooks into the history, against a real tracking server that sends
them: an alias moved outside the console is written down when it happens (a manual event,
recorded), our own moves are not written twice, and unsigned, forged, replayed or malformed
deliveries are refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from tests import services

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server, pytest.mark.slow]

SECRET = "webhook-secret-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def webhook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[services.MlflowServer]:
    """A tracking server of our own that may deliver to loopback over http (a shared one
    would deliver every other test's alias moves to us)."""
    from cryptography.fernet import Fernet

    root = tmp_path_factory.mktemp("mlflow-webhooks")
    server = services.start_mlflow_server(
        root,
        # The server keeps webhook secrets encrypted; without a key of its own each worker
        # process makes one, and a worker that did not store a secret cannot sign with it.
        MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
        MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
        MLFLOW_WEBHOOK_CACHE_TTL="1",
    )
    try:
        yield server
    finally:
        services.stop(server)


@pytest.fixture(scope="module")
def receiver(
    webhook_server: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("hooks")
    (tmp / "secret").write_text(SECRET + "\n")
    (tmp / "data.csv").write_text("a,target\n1,0\n")
    port = services.free_port()
    log = tmp / "hooks.log"
    proc = services._spawn(
        [services.VENV_BIN + "/mlops", "hooks", "serve", "--data", str(tmp / "data.csv"),
         "--port", str(port), "--token-file", str(tmp / "token"),
         "--mlflow-secret-file", str(tmp / "secret")],
        log, tmp, MLFLOW_TRACKING_URI=webhook_server.url, DOCKER_HOST="unix:///nonexistent",
    )  # fmt: skip
    services.remember_log("mlops hooks serve", log)
    url = f"http://127.0.0.1:{port}"
    try:
        services._wait_http(f"{url}/health", proc, log, 60, "hooks")
        from console.cli.main import app

        registered = CliRunner().invoke(
            app,
            ["hooks", "register-mlflow", "--url", f"{url}/hooks/mlflow",
             "--secret-file", str(tmp / "secret")],
            env={"MLFLOW_TRACKING_URI": webhook_server.url},
        )  # fmt: skip
        assert registered.exit_code == 0, registered.output
        yield url
    finally:
        services._stop(proc)


def events(uri: str, name: str) -> list[Any]:
    from backends.mlflow.registry import Registry

    return Registry(uri).history_report(name, "champion").events  # type: ignore[return-value]


def wait_for(condition: Any, what: str, hang_guard: float = 60) -> Any:
    deadline = time.monotonic() + hang_guard
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"{what}: not within the {hang_guard:.0f} s hang guard")


def test_an_outside_alias_move_enters_the_history_when_it_happens(
    webhook_server: services.MlflowServer, receiver: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from backends.mlflow.registry import Registry
    from tests.models import log_version

    uri = webhook_server.url
    mlflow.set_tracking_uri(uri)
    name = f"hooked-{uuid.uuid4().hex[:6]}"
    exp = MlflowClient(uri).create_experiment(name)
    for seed in (1, 2):
        log_version(exp, name, seed, False, tmp_path)
    Registry(uri, user="alice").promote(name, 1, reason="first")

    MlflowClient(uri).set_registered_model_alias(name, "champion", "2")  # by hand, elsewhere
    manual = wait_for(
        lambda: next((e for e in events(uri, name) if e.action == "manual" and e.recorded), None),
        "the outside move recorded",
    )
    assert (manual.from_version, manual.to_version, manual.who) == (1, 2, "unknown")
    assert "registry webhook" in manual.reason and not manual.pending

    # Our own move is delivered too, and is not written down a second time.
    Registry(uri, user="bob").rollback(name, to=1)
    time.sleep(3)  # deliveries are asynchronous: give a wrong write the time to happen
    actions = [(e.action, e.to_version) for e in events(uri, name)]
    assert actions == [("promote", 1), ("manual", 2), ("rollback", 1)], actions

    # A deletion by hand, too.
    MlflowClient(uri).delete_registered_model_alias(name, "champion")
    gone = wait_for(
        lambda: next((e for e in events(uri, name) if e.to_version is None and e.recorded), None),
        "the deletion recorded",
    )
    assert gone.action == "manual" and "registry webhook" in gone.reason


def signed(body: bytes, *, secret: str = SECRET, stamp: int | None = None) -> dict[str, str]:
    delivery = uuid.uuid4().hex
    ts = str(stamp if stamp is not None else int(time.time()))
    digest = hmac.new(secret.encode(), f"{delivery}.{ts}.".encode() + body, hashlib.sha256)
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": "v1," + base64.b64encode(digest.digest()).decode(),
    }


def test_unsigned_forged_replayed_and_malformed_deliveries_are_refused(receiver: str) -> None:
    body = json.dumps(
        {"entity": "model_version_alias", "action": "created", "timestamp": "x",
         "data": {"name": "m", "alias": "champion", "version": "1"}}
    ).encode()  # fmt: skip
    url = f"{receiver}/hooks/mlflow"
    cases = [
        ({}, 401, "unsigned"),
        (signed(body, secret="not-the-secret"), 401, "bad signature"),
        (signed(body, stamp=int(time.time()) - 3600), 401, "too old"),
        ({**signed(body), "X-MLflow-Signature": "v2,abc"}, 401, "bad signature"),
    ]
    for headers, status, says in cases:
        r = httpx.post(url, content=body, headers=headers, timeout=10)
        assert r.status_code == status and says in r.json()["error"]["message"], (headers, r.text)
    junk = b'{"entity": "model_version_alias", "action": "created", "data": {"name": 3}}'
    r = httpx.post(url, content=junk, headers=signed(junk), timeout=10)
    assert r.status_code == 400 and "data.name" in r.json()["error"]["message"]
    other = b'{"entity": "registered_model", "action": "created", "data": {}}'
    r = httpx.post(url, content=other, headers=signed(other), timeout=10)
    assert r.status_code == 200 and r.json()["recorded"] is False


def _outside_moved(tmp_path: Path) -> tuple[str, Any]:
    """A sqlite registry where champion was promoted to 1, then set to 2 by hand."""
    from mlflow.tracking import MlflowClient

    from backends.mlflow.registry import Registry

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model("m")
    for i in (1, 2):
        client.create_model_version("m", source=str(tmp_path / f"v{i}"))
    registry = Registry(uri, user="alice")
    registry._tags.move(registry.alias_state("m"), 1, "promote", "first")  # no gate: no model
    client.set_registered_model_alias("m", "champion", "2")
    return uri, client


def test_when_two_deliveries_meet_the_older_claim_writes_it_once(tmp_path: Path) -> None:
    from backends.mlflow.history import encode_claim
    from backends.mlflow.registry import Registry

    uri, client = _outside_moved(tmp_path)
    # A younger claimant (another delivery) that withdraws a moment later.
    key, value = encode_claim("champion", "younger", "webhook", None)
    data = json.loads(value)
    data["at"] += 1.0
    client.set_registered_model_tag("m", key, json.dumps(data))

    def withdraw() -> None:
        time.sleep(0.5)
        client.delete_registered_model_tag("m", key)

    import threading

    threading.Thread(target=withdraw).start()
    event = Registry(uri, user="hooks").record_outside_move("m", "champion", "seen by webhook")
    assert event is not None and (event.from_version, event.to_version) == (1, 2)
    again = Registry(uri, user="hooks").record_outside_move("m", "champion", "a retry")
    assert again is None  # recorded once
    actions = [(e.action, e.to_version, e.recorded) for e in Registry(uri).history("m")]
    assert actions == [("promote", 1, True), ("manual", 2, True)]


def test_an_older_claimant_is_left_to_write_it(tmp_path: Path) -> None:
    from backends.mlflow.history import encode_claim
    from backends.mlflow.registry import Registry

    uri, client = _outside_moved(tmp_path)
    key, value = encode_claim("champion", "older", "bob", 2)
    data = json.loads(value)
    data["at"] -= 1.0
    client.set_registered_model_tag("m", key, json.dumps(data))
    assert Registry(uri, user="hooks").record_outside_move("m", "champion", "x") is None
    tags = client.get_registered_model("m").tags
    assert [k for k in tags if k.startswith("mlops.claim.")] == [key]  # ours withdrawn
