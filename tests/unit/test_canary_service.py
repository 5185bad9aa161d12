"""The console's canaries service: a release file read into our record (each check's last
verdict and figures), and a person's request whose refusal the worker kept in the file
raised as the Conflict the console shows."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from backends.canary import analysis
from backends.canary.analysis import Plan
from backends.canary.checks import evaluate
from backends.errors import BackendError, Conflict
from backends.lifecycle import canary
from backends.lifecycle.canary import Release
from console.services.canaries import LocalCanaries, release_record


def release(**overrides: Any) -> Release:
    plan = Plan.parse(
        "10,25,50,100", "1m", 2, ["error_ratio<0.01", "p99<0.25", "accuracy>=stable-0.02"]
    )
    state = analysis.start(plan)
    canary_figures = {"error_ratio": 0.002, "p99": 0.31, "accuracy": None}
    state, _ = analysis.decide(state, evaluate(plan.checks, canary_figures, {"accuracy": 0.95}))
    base: dict[str, Any] = dict(
        deployment="iris-prod",
        model="iris",
        stable_version=2,
        canary_version=3,
        canary_container="mlops-iris-prod-canary",
        canary_port=8081,
        image="mlops/iris:v3",
        alias="champion",
        follow_alias=False,
        sticky_header="",
        reason="",
        state=state,
        next_evaluation=time.time() + 30,
        figures={"canary": canary_figures, "stable": {"accuracy": 0.95}},
    )
    base.update(overrides)
    return Release(**base)


def test_a_release_reads_as_our_record() -> None:
    record = release_record(release())
    assert (record.status, record.weight, record.step, record.steps) == (
        "running",
        10,
        1,
        (10, 25, 50, 100),
    )
    assert (record.failures, record.failure_limit, record.interval) == (1, 2, 60.0)
    marks = [(c.check, c.mark, c.figures) for c in record.checks]
    assert marks == [
        ("error_ratio < 0.01", "✓", "error_ratio 0.002 < 0.01"),
        ("p99 < 0.25 s", "✗", "p99 0.31 s < 0.25 s"),
        ("accuracy ≥ stable - 0.02", "?", "accuracy n/a ≥ 0.93 (stable 0.95 - 0.02)"),
    ]
    assert record.last.startswith("failed evaluation 1/2, staying at 10 %")
    assert record.next_evaluation is not None and not record.finished
    assert record.figures == {
        "canary": {"error_ratio": 0.002, "p99": 0.31, "accuracy": None},
        "stable": {"accuracy": 0.95},
    }


def test_checks_before_the_first_evaluation_have_no_verdict() -> None:
    fresh = release(state=analysis.start(release().state.plan))
    assert [c.mark for c in release_record(fresh).checks] == ["·", "·", "·"]


def test_the_release_files_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_STATE_DIR", str(tmp_path))
    canary.releases_dir().mkdir(parents=True)
    canary.release_path("iris-prod").write_text(release().to_json())
    (listed,) = LocalCanaries(None).canary_releases()  # type: ignore[arg-type]
    assert listed.deployment == "iris-prod" and listed.canary_version == 3


class Session:
    @contextmanager
    def for_change(self) -> Iterator[object]:
        yield "handles"


def test_a_refusal_the_worker_kept_is_raised_as_a_conflict() -> None:
    refused = release(problem="resume refused: cannot resume the canary: it is running, not paused")
    with pytest.raises(Conflict) as caught:
        canary.outcome_of(refused, "resume")
    assert caught.value.message == "cannot resume the canary: it is running, not paused"


def test_a_failure_to_act_is_raised_and_a_success_returned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kept = release()
    failed = replace(kept, problem="promote: the canary's image mlops/iris:v3 is gone")
    with pytest.raises(BackendError, match="image mlops/iris:v3 is gone"):
        canary.outcome_of(failed, "promote")
    aborted_state, _ = analysis.abort(kept.state)
    aborted = replace(kept, state=aborted_state)
    seen: list[tuple[object, ...]] = []

    def abort_release(h: object, name: str, note: str) -> Release:
        seen.append((h, name, note))
        return aborted

    monkeypatch.setattr(canary, "abort_release", abort_release)
    record = LocalCanaries(Session()).decide_canary("iris-prod", "abort")  # type: ignore[arg-type]
    assert record.status == "aborted" and record.weight == 0 and record.next_evaluation is None
    assert seen == [("handles", "iris-prod", "from the console")]


def test_a_release_file_reads_across_versions_of_this_tool() -> None:
    scraped = release()
    doc = json.loads(scraped.to_json())
    assert "prometheus_url" not in doc  # an earlier version reads it as it always did
    assert Release.from_json(scraped.to_json()) == scraped
    assert release_record(scraped).figures_source == "the direct scrape"
    asked = release(prometheus_url="http://prom:9090")
    assert Release.from_json(asked.to_json()).prometheus_url == "http://prom:9090"
    assert release_record(asked).figures_source == "Prometheus http://prom:9090"
    doc = json.loads(asked.to_json())
    doc["a_field_of_a_later_version"] = {"x": 1}
    assert Release.from_json(json.dumps(doc)) == asked  # the rest still reads
