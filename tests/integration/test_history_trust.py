"""An alias history a team can trust, against real servers (sqlite and PostgreSQL): forged and
oversized tags, long non-ASCII reasons, a claim taken away, and many operators at once, also
through a proxy that makes every request slow."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from typer.testing import CliRunner

from backends.errors import Conflict
from backends.mlflow.registry import Registry
from tests import services
from tests.conftest import STORES, server_for
from tests.models import log_version
from tests.proxies import RelayProxy

pytestmark = [pytest.mark.integration, pytest.mark.mlflow_server]


@pytest.fixture(scope="module", params=STORES)
def mlflow_server(request: pytest.FixtureRequest) -> services.MlflowServer:
    return server_for(request.param)


@dataclass
class Model:
    uri: str
    name: str
    store: str


@pytest.fixture(scope="module")
def runs(mlflow_server: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Three logged iris models of this module's own experiment."""
    import mlflow

    tmp = tmp_path_factory.mktemp("trust")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
        mlflow.set_tracking_uri(mlflow_server.url)
        experiment = mlflow.MlflowClient(mlflow_server.url).create_experiment(
            f"trust-{uuid.uuid4().hex[:6]}"
        )
        name = f"trust-{uuid.uuid4().hex[:6]}"
        ids = [log_version(experiment, name, seed, False, tmp)[1] for seed in (1, 2, 3)]
    return name, ids


@pytest.fixture
def model(mlflow_server: services.MlflowServer, runs: Any) -> Iterator[Model]:
    """A fresh registered model with three versions, champion at 1."""
    base, ids = runs
    name = f"{base}-{uuid.uuid4().hex[:4]}"
    registry = Registry(mlflow_server.url, user="setup")
    for run_id in ids:
        registry.register(run_id, name)
    registry.promote(name, 1, reason="start")
    store = "postgresql" if "postgres" in str(mlflow_server.root) else "sqlite"
    yield Model(mlflow_server.url, name, store)


@pytest.fixture
def pg_model(runs_on_postgres: Any, mlflow_server_on_postgres: services.MlflowServer) -> Model:
    """A fresh model on the PostgreSQL-backed server (a team's, for the load test)."""
    base, ids = runs_on_postgres
    name = f"{base}-{uuid.uuid4().hex[:4]}"
    registry = Registry(mlflow_server_on_postgres.url, user="setup")
    for run_id in ids:
        registry.register(run_id, name)
    registry.promote(name, 1, reason="start")
    return Model(mlflow_server_on_postgres.url, name, "postgresql")


@pytest.fixture(scope="module")
def runs_on_postgres(
    mlflow_server_on_postgres: services.MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    import mlflow

    tmp = tmp_path_factory.mktemp("trust-pg")
    uri = mlflow_server_on_postgres.url
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        experiment = mlflow.MlflowClient(uri).create_experiment(f"load-{uuid.uuid4().hex[:6]}")
        name = f"load-{uuid.uuid4().hex[:6]}"
        ids = [log_version(experiment, name, seed, False, tmp)[1] for seed in (1, 2, 3)]
    return name, ids


def tag(m: Model, key: str, value: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(m.uri).set_registered_model_tag(m.name, key, value)


def history(m: Model) -> dict[str, Any]:
    from console.cli.main import app

    result = CliRunner().invoke(
        app,
        ["models", "history", m.name, "--alias", "champion", "--json"],
        env={"MLFLOW_TRACKING_URI": m.uri},
    )
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


FORGED = [
    ("a claim dated far in the future", "mlops.claim.champion.eve00001", None),
    ("a sequence of nine digits", "mlops.history.champion.999999999.eve00002", None),
    ("a time without a zone", "mlops.history.champion.00000050.eve00003", "no time zone"),
    ("junk JSON", "mlops.history.champion.00000051.eve00004", "not JSON"),
    ("an unknown action", "mlops.history.champion.00000052.eve00005", "unknown action"),
]


def forged_value(case: str) -> str:
    now = time.time()
    return {
        "a claim dated far in the future": json.dumps({"who": "eve", "to": 2, "at": now + 10**8}),
        "a sequence of nine digits": json.dumps(
            {
                "action": "promote",
                "from": 1,
                "to": 1,
                "who": "eve",
                "at": "2026-01-01T00:00:00+00:00",
            }
        ),
        "a time without a zone": json.dumps(
            {"action": "promote", "from": 1, "to": 3, "who": "eve", "at": "2026-01-01T00:00:00"}
        ),
        "junk JSON": "{not json",
        "an unknown action": json.dumps({"action": "wipe", "at": "2026-01-01T00:00:00+00:00"}),
    }[case]


@pytest.mark.parametrize(("case", "key", "why"), FORGED, ids=[f[0] for f in FORGED])
def test_a_forged_tag_neither_wedges_nor_hides_nor_crashes(
    model: Model, case: str, key: str, why: str | None
) -> None:
    tag(model, key, forged_value(case))
    before = history(model)
    if why is not None:
        (entry,) = before["unreadable"]
        assert entry["key"] == key and why in entry["why"]
    # Moves go on: no claim wedges the alias, and the next event is numbered after every
    # entry that was written, a nine-digit one included.
    registry = Registry(model.uri, user="alice")
    event = registry.promote(model.name, 2, reason=f"after {case}")[1]
    assert event is not None and event.to_version == 2
    assert registry.alias_state(model.name).version == 2
    after = history(model)
    champion = [e for e in after["events"] if e["alias"] == "champion"]
    assert champion[-1]["id"] == event.id and champion[-1]["who"] == "alice"
    seqs = [e["seq"] for e in champion]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    if case == "a sequence of nine digits":
        assert event.seq == 1_000_000_000
    if case == "a claim dated far in the future":
        from mlflow import MlflowClient

        tags = MlflowClient(model.uri).get_registered_model(model.name).tags
        assert key not in tags  # swept by the move
    from console.cli.main import app

    text = CliRunner().invoke(
        app, ["models", "history", model.name], env={"MLFLOW_TRACKING_URI": model.uri}
    )
    assert text.exit_code == 0
    if why is not None:
        assert "1 unreadable entry: " + key in text.output


def test_an_oversized_value_is_refused_by_postgresql_and_reported_by_sqlite(model: Model) -> None:
    key = "mlops.history.champion.00000060.eve00006"
    value = json.dumps(
        {"action": "promote", "to": 2, "at": "2026-01-01T00:00:00+00:00", "reason": "x" * 6000}
    )
    if model.store == "postgresql":
        with pytest.raises(Exception):  # noqa: B017  # the store's own limit: 5,000 characters
            tag(model, key, value)
        return
    tag(model, key, value)
    (entry,) = history(model)["unreadable"]
    assert entry["key"] == key and "characters" in entry["why"]


def test_a_long_non_ascii_reason_is_cut_to_fit_and_the_move_has_its_event(model: Model) -> None:
    reason = "régression p99 ✓ — " * 600  # ~11,000 characters; 6-12x that as ASCII escapes
    event = Registry(model.uri, user="ö" * 200).promote(model.name, 3, reason=reason)[1]
    assert event is not None and event.reason.endswith("[truncated]")
    (stored,) = [e for e in history(model)["events"] if e["id"] == event.id]
    assert stored["reason"] == event.reason and stored["who"] == "ö" * 200
    assert Registry(model.uri).alias_state(model.name).version == 3


def test_a_holder_whose_claim_was_taken_away_refuses(
    model: Model, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from backends.mlflow import alias_moves

    registry = Registry(model.uri, user="alice")
    real = alias_moves.ModelTags._still_holding

    def taken_meanwhile(self: Any, name: str, alias: str, claim: str, claimed: float) -> None:
        other = MlflowClient(model.uri)
        other.delete_registered_model_tag(name, claim)  # someone sweeps it as stale
        real(self, name, alias, claim, claimed)

    monkeypatch.setattr(alias_moves.ModelTags, "_still_holding", taken_meanwhile)
    with pytest.raises(Conflict, match="taken away"):
        registry.promote(model.name, 2, reason="slow")
    monkeypatch.undo()
    assert Registry(model.uri).alias_state(model.name).version == 1  # nothing moved
    assert all(e["reason"] != "slow" for e in history(model)["events"])


# --------------------------------------------------------------------------- many at once


def _racers(
    uri: str, model: str, user: str, versions: list[int], count: int, barrier: Any, results: Any
) -> None:
    """``count`` concurrent moves by ``user`` (runs in its own process). They go through the
    claim and commit every promote goes through, without its gate: a hundred gates at once
    would measure the gate (two run at a time per process), not the history's exclusion."""
    outcome: dict[str, list[str]] = {"moved": [], "conflicts": [], "errors": []}
    lock = threading.Lock()
    barrier.wait(timeout=600)
    started = time.monotonic()

    def one(i: int) -> None:
        try:
            event = Registry(uri, user=f"{user}-{i}").rollback(
                model, to=versions[i % len(versions)], reason=f"{user} {i}"
            )
        except Conflict as exc:
            with lock:
                outcome["conflicts"].append(exc.message)
        except Exception as exc:
            with lock:
                outcome["errors"].append(repr(exc))
        else:
            if event is not None:
                with lock:
                    outcome["moved"].append(event.id)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results.put({"user": user, "seconds": time.monotonic() - started, **outcome})


def _assert_trustworthy(uri: str, model: str, outcome: list[dict[str, Any]]) -> None:
    events = Registry(uri).history(model, "champion")
    reported = [e for o in outcome for e in o["moved"]]
    assert len(reported) == len(set(reported))
    assert {e.id for e in events[1:]} == set(reported)  # 0 lost events, 0 phantoms
    seqs = [e.seq for e in events]
    assert len(seqs) == len(set(seqs)) and seqs == sorted(seqs)  # 0 duplicate numbers
    for before, after in itertools.pairwise(events):
        assert after.from_version == before.to_version  # serialised
    assert Registry(uri).alias_state(model, "champion").version == events[-1].to_version
    for o in outcome:
        assert not o["errors"], o["errors"][:3]
        for message in o["conflicts"]:  # every refused racer is told who won
            assert "alice" in message or "bob" in message, message


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 1.0], ids=["direct", "through a slow proxy"])
def test_two_processes_of_fifty_concurrent_moves(pg_model: Model, delay: float) -> None:
    model = pg_model
    proxy = RelayProxy(model.uri, delay=delay) if delay else None
    uri = proxy.url if proxy else model.uri
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_racers, args=(uri, model.name, user, versions, 50, barrier, results))
        for user, versions in (("alice", [2, 1]), ("bob", [3, 1]))
    ]
    try:
        for p in procs:
            p.start()
        outcome = [results.get(timeout=900) for _ in procs]
        for p in procs:
            p.join(timeout=60)
    finally:
        if proxy:
            proxy.close()
    print({o["user"]: (len(o["moved"]), len(o["conflicts"]), o["seconds"]) for o in outcome})
    _assert_trustworthy(model.uri, model.name, outcome)
