"""`--json` on every command that reports an outcome: one document on stdout (stable keys), its
steps on stderr, and the documented exit codes. The flows are faked (no service): the real
ones run in tests/integration (test_tracking_train, test_retrain, test_containers,
test_quickstart)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from backends.errors import Conflict
from backends.lifecycle.retrain_steps import DriftFigures, FeatureFigure, ServingState
from backends.records import (
    AliasEvent,
    BuildOutcome,
    Deployment,
    DeployOutcome,
    DeployPlan,
    ModelVersion,
    RetrainOutcome,
    RollbackOutcome,
    RollbackPlan,
    ServingImage,
    TakeDownOutcome,
    TakeDownPlan,
)
from console.cli.exit_codes import ExitCode
from console.cli.main import app

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)
ENV = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:9", "DOCKER_HOST": "tcp://127.0.0.1:9"}
BUILD_LINES = [
    "downloading models:/iris/2",
    "building mlops/iris:v2-run for models:/iris/2 from mlops-base:bookworm",
    "Step 1/2 : FROM mlops-base:bookworm",
    " ---> Using cache",
    "Step 2/2 : COPY model /model",
    "Successfully built 0123abcd",
    "Successfully tagged mlops/iris:v2-run",
]


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, list(args), env=ENV)


def document(result: Any) -> Any:
    """stdout is exactly one JSON document (nothing else printed there)."""
    return json.loads(result.stdout)


def version(v: int = 2) -> ModelVersion:
    return ModelVersion(
        name="iris",
        version=v,
        run_id=f"run{v:029d}",
        metrics={"accuracy": 0.95},
        aliases=("champion",),
        tags={},
        created=T0,
        status="READY",
        stage=None,
        source="models:/m-1",
    )


def image(v: int = 2) -> ServingImage:
    return ServingImage(f"sha{v}", (f"mlops/iris:v{v}-run",), "iris", v, f"run{v}", 7_000_000, T0)


def deployment(v: int = 2, name: str = "iris") -> Deployment:
    return Deployment(
        name=name,
        model="iris",
        version=v,
        alias="champion",
        run_id=f"run{v}",
        image=f"mlops/iris:v{v}-run",
        container_id="c0ffee",
        state="running",
        health="healthy",
        host="127.0.0.1",
        port=8080,
        started_at=T0,
    )


def alias_event(to: int) -> AliasEvent:
    return AliasEvent("1.x", "iris", "champion", 7, "rollback", to + 1, to, "ana", T0, "")


# ---------------------------------------------------------------- image build


def test_image_build_json_keeps_docker_steps_on_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    def build(h: object, ref: str, *, on_log: Callable[[str], None], **_: object) -> BuildOutcome:
        for line in BUILD_LINES:
            on_log(line)
        return BuildOutcome(image(), version(), cached=False)

    monkeypatch.setattr("backends.lifecycle.build.build", build)
    result = invoke("image", "build", "iris@champion", "--json")
    assert result.exit_code == 0, result.output
    assert document(result)["tags"] == ["mlops/iris:v2-run"]
    assert "Step 2/2 : COPY model /model" in result.stderr  # plain lines: not a terminal
    assert "Step" not in result.stdout
    human = invoke("image", "build", "iris@champion")
    assert human.stdout.startswith("built mlops/iris:v2-run (iris v2, 7 MB)")
    assert "Step 1/2" in human.stderr and "Step" not in human.stdout
    quiet = invoke("image", "build", "iris@champion", "-q")
    assert quiet.stderr == ""


# ---------------------------------------------------------------- deploy up, rollback, down


@pytest.fixture
def deploy_flows(monkeypatch: pytest.MonkeyPatch) -> None:
    """deploy up over v1 with v2, which has no image yet: it builds first."""

    def plan_deploy(h: object, ref: str, **_: object) -> DeployPlan:
        return DeployPlan(
            reference=ref,
            version=version(),
            alias="champion",
            name="iris",
            host="127.0.0.1",
            port=8080,
            follow_alias=False,
            current=deployment(1),
            image=None,
        )

    def apply_deploy(
        h: object,
        plan: DeployPlan,
        *,
        reason: str,
        on_log: Callable[[str], None],
        replicas: int | None = None,
        timeout: float | None = None,
    ) -> DeployOutcome:
        for line in BUILD_LINES:
            on_log(line)
        return DeployOutcome(deployment(2), 1, image(), True, warning="")

    monkeypatch.setattr("backends.lifecycle.deploy.plan_deploy", plan_deploy)
    monkeypatch.setattr("backends.lifecycle.deploy.apply_deploy", apply_deploy)


def test_deploy_up_json(deploy_flows: None) -> None:
    result = invoke("deploy", "up", "iris@champion", "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = document(result)
    assert (doc["name"], doc["version"], doc["url"]) == ("iris", 2, "http://127.0.0.1:8080")
    # The build's steps, then the switch as a step of its own; Docker's chatter only beside
    # the step on a terminal.
    assert result.stderr.splitlines()[-4:] == [
        "building mlops/iris:v2-run for models:/iris/2 from mlops-base:bookworm",
        "Step 1/2 : FROM mlops-base:bookworm",
        "Step 2/2 : COPY model /model",
        "iris: starting v2, waiting for /ready, then switching from v1",
    ]


def rollback_plan(*, alias: str = "") -> RollbackPlan:
    return RollbackPlan("iris", "iris", 2, 1, deployment(2), alias=alias)


@pytest.mark.parametrize("via_alias", [False, True])
def test_deploy_rollback_json_has_the_same_keys_either_way(
    monkeypatch: pytest.MonkeyPatch, via_alias: bool
) -> None:
    plan = rollback_plan(alias="champion" if via_alias else "")
    outcome = (
        RollbackOutcome("iris", "iris", 2, 1, alias="champion", alias_event=alias_event(1))
        if via_alias
        else RollbackOutcome("iris", "iris", 2, 1, deployment=deployment(1))
    )
    monkeypatch.setattr("backends.lifecycle.rollback.plan_rollback", lambda h, n, to: plan)
    monkeypatch.setattr(
        "backends.lifecycle.rollback.apply_rollback", lambda h, p, reason, on_log: outcome
    )
    result = invoke("deploy", "rollback", "iris", "--yes", "--json")
    assert result.exit_code == 0, result.output
    doc = document(result)
    assert set(doc) == {
        "name", "model", "from_version", "to_version", "via_alias", "deployment", "alias",
        "alias_event", "warning",
    }  # fmt: skip
    assert (doc["from_version"], doc["to_version"], doc["via_alias"]) == (2, 1, via_alias)
    if via_alias:
        assert doc["deployment"] is None and doc["alias_event"]["to_version"] == 1
        assert "starting" not in result.stderr  # an alias move: nothing starts here
    else:
        assert doc["deployment"]["url"] == "http://127.0.0.1:8080"
        assert "iris: starting v1, waiting for /ready, then switching from v2" in result.stderr


def test_deploy_rollback_conflict_keeps_its_exit_code_and_prints_no_document(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def moved(*_: object, **__: object) -> RollbackOutcome:
        raise Conflict("deployment iris changed since the plan")

    monkeypatch.setattr(
        "backends.lifecycle.rollback.plan_rollback", lambda h, n, to: rollback_plan()
    )
    monkeypatch.setattr("backends.lifecycle.rollback.apply_rollback", moved)
    result = invoke("deploy", "rollback", "iris", "--yes", "--json")
    assert result.exit_code == ExitCode.CONFLICT
    assert result.stdout == "" and "changed since the plan" in result.stderr


def test_deploy_down_json(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = TakeDownPlan("iris", deployment(2), ("mlops-iris", "mlops-iris-v2"))
    monkeypatch.setattr("backends.lifecycle.deploy.plan_take_down", lambda h, name: plan)
    monkeypatch.setattr(
        "backends.lifecycle.deploy.apply_take_down",
        lambda h, p: TakeDownOutcome("iris", p.containers),
    )
    result = invoke("deploy", "down", "iris", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert document(result) == {
        "name": "iris",
        "removed": ["mlops-iris", "mlops-iris-v2"],
        "warning": "",
    }
    assert "Take down deployment 'iris'" in result.stderr  # the plan, on stderr
    human = invoke("deploy", "down", "iris", "--yes")
    assert human.stdout == "iris: removed mlops-iris, mlops-iris-v2\n"


# ---------------------------------------------------------------- train


class FakeTraining:
    """backends.mlflow.training.Training, without a process: it prints two lines."""

    exit_code = 0

    def __init__(self, project: Path, tracking_uri: str, **_: object) -> None:
        self.run_id: str | None = None
        self.experiment = "iris"
        self.log_path = Path("/state/logs/pending.log")

    def start(self) -> None:
        pass

    def lines(self) -> Iterator[str]:
        self.run_id = "a" * 32
        yield "training with n_estimators=5"
        yield f"run_id={self.run_id} accuracy=0.95"

    def interrupt(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> int:
        return self.exit_code

    def finish(self, code: int) -> str:
        self.log_path = Path(f"/state/logs/{self.run_id}.log")
        return "FINISHED" if code == 0 else "FAILED"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "MLproject").write_text("name: iris\n")
    monkeypatch.setattr("backends.mlflow.training.Training", FakeTraining)
    monkeypatch.setattr("backends.mlflow.client.probe", lambda uri: None)
    monkeypatch.setattr(
        "backends.mlflow.training.register_model", lambda uri, run_id, name: version(3)
    )
    return tmp_path


def test_train_json_streams_to_stderr_and_reports_the_run(project: Path) -> None:
    result = invoke("train", str(project), "--register-as", "iris", "--json")
    assert result.exit_code == 0, result.output
    doc = document(result)
    assert doc == {
        "run_id": "a" * 32,
        "status": "FINISHED",
        "experiment": "iris",
        "exit_code": 0,
        "log_path": f"/state/logs/{'a' * 32}.log",
        "registered": doc["registered"],
        "detached": False,
        "pid": None,
    }
    assert (doc["registered"]["name"], doc["registered"]["version"]) == ("iris", 3)
    assert "training with n_estimators=5" in result.stderr  # the training's own output
    human = invoke("train", str(project), "--register-as", "iris")
    assert human.stdout.splitlines()[-2:] == [
        f"run_id={'a' * 32} status=FINISHED experiment=iris",
        "registered iris version 3",
    ]


def test_train_json_reports_a_failed_run_and_exits_with_its_status(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeTraining, "exit_code", 1)
    result = invoke("train", str(project), "--register-as", "iris", "--json")
    assert result.exit_code == 1
    doc = document(result)
    assert (doc["status"], doc["exit_code"], doc["registered"]) == ("FAILED", 1, None)
    assert "training exited with status 1" in result.stderr


def test_train_json_usage_errors_print_no_document(tmp_path: Path) -> None:
    result = invoke("train", str(tmp_path), "--json")  # no MLproject there
    assert result.exit_code == ExitCode.USAGE and result.stdout == ""


# ---------------------------------------------------------------- retrain


def serving_state(psi: float) -> ServingState:
    ks_pvalue = 0.01 if psi > 0.2 else 0.5  # both figures agree: drift, or none
    figures = DriftFigures((FeatureFigure("petal_length", psi, ks_pvalue),), 0.2, 0.05)
    return ServingState("http://127.0.0.1:8080", "iris", 2, "r" * 32, "champion", "ok", figures)


def retrain_outcome(passed: bool = True) -> RetrainOutcome:
    return RetrainOutcome(
        deployment="",
        model="iris",
        served_version=2,
        served_run_id="r" * 32,
        drift="drift: petal_length PSI=0.35",
        run_id="c" * 32,
        challenger_version=3,
        comparison="challenger not worse than champion",
        champion_score=0.95,
        challenger_score=0.96,
        gate_passed=passed,
        gate="challenger -> iris v3 (gate passed)" if passed else "challenger is worse",
        log_path="/tmp/c.log",
    )


@pytest.fixture
def retrain_flow(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    knobs: dict[str, Any] = {"psi": 0.35, "outcome": retrain_outcome()}

    def challenger(h: object, state: object, data: Path, **kw: Any) -> RetrainOutcome:
        kw["on_step"]("training examples/iris with {'data': 'new.csv'}")
        kw["on_line"]("accuracy=0.96")
        return knobs["outcome"]  # type: ignore[no-any-return]

    class Registry:
        def approve(self, name: str, v: int, *, reason: str) -> tuple[object, AliasEvent]:
            return None, replace(alias_event(v), action="approve", from_version=2)

    monkeypatch.setattr(
        "backends.lifecycle.retrain.serving",
        lambda h, url, psi, ks_pvalue: serving_state(knobs["psi"]),
    )
    monkeypatch.setattr("backends.lifecycle.retrain.retrain_challenger", challenger)
    monkeypatch.setattr("backends.lifecycle.handles.Handles.registry", lambda self: Registry())
    (tmp_path / "new.csv").write_text("x\n1\n")
    knobs["data"] = str(tmp_path / "new.csv")
    return knobs


def retrain(knobs: dict[str, Any], *args: str) -> Any:
    return invoke("retrain", "--target", "http://127.0.0.1:8080", "--data", knobs["data"], *args)


def test_retrain_json_without_drift_says_it_did_nothing(retrain_flow: dict[str, Any]) -> None:
    retrain_flow["psi"] = 0.01
    result = retrain(retrain_flow, "--if-drift", "--json")
    assert result.exit_code == 0, result.output
    doc = document(result)
    assert set(doc) == {"serving", "drift", "retrained", "outcome", "approved"}
    assert (doc["retrained"], doc["outcome"], doc["approved"]) == (False, None, None)
    assert doc["serving"] == {
        "url": "http://127.0.0.1:8080",
        "model": "iris",
        "version": 2,
        "alias": "champion",
        "run_id": "r" * 32,
    }
    assert doc["drift"]["drifted"] is False and doc["drift"]["psi_threshold"] == 0.2
    assert "nothing to retrain" in result.stderr


def test_retrain_json_reports_the_challenger_and_the_approval(
    retrain_flow: dict[str, Any],
) -> None:
    result = retrain(retrain_flow, "--approve", "--json")
    assert result.exit_code == 0, result.output
    doc = document(result)
    assert doc["retrained"] is True and doc["drift"]["drifted"] is True
    assert (doc["outcome"]["challenger_version"], doc["outcome"]["gate_passed"]) == (3, True)
    assert (doc["approved"]["action"], doc["approved"]["to_version"]) == ("approve", 3)
    assert "  accuracy=0.96" in result.stderr and "champion -> iris v3" in result.stderr


def test_retrain_json_when_the_gate_stops_it_exits_1_with_the_document(
    retrain_flow: dict[str, Any],
) -> None:
    retrain_flow["outcome"] = retrain_outcome(passed=False)
    result = retrain(retrain_flow, "--approve", "--json")
    assert result.exit_code == ExitCode.CHECK_FAILED
    doc = document(result)
    assert doc["outcome"]["gate_passed"] is False and doc["approved"] is None
    assert "challenger is worse" in result.stderr


# ---------------------------------------------------------------- quickstart


@pytest.fixture
def quickstart_flow(monkeypatch: pytest.MonkeyPatch) -> None:
    from backends.lifecycle.quickstart import QuickstartOutcome

    def run(h: object, project: Path, *, local: bool, on_step: Callable[[str], object]) -> Any:
        on_step("[1/6] training iris with {'n_estimators': '3'}")
        on_step(f"      run {'a' * 32}: accuracy 0.953 -> iris v1")
        on_step("      Step 1/9 : FROM mlops-base:bookworm")
        on_step("[4/6] serving iris@champion as a local process (pid 42) at http://127.0.0.1:8081")
        return QuickstartOutcome(
            champion=version(1),
            url="http://127.0.0.1:8081",
            how="as a local process (pid 42)",
            deployment="",
            prometheus_url=None,
            alertmanager_url=None,
            sent=450,
            failed=0,
        )

    class NoConsole:
        def __init__(self, *_: object, **__: object) -> None:
            raise AssertionError("the console must not open")

    monkeypatch.setattr("backends.lifecycle.quickstart.run", run)
    monkeypatch.setattr("backends.lifecycle.quickstart.stop", lambda h: ["mlops-quickstart"])
    monkeypatch.setattr("console.app.MlopsApp", NoConsole)


def test_quickstart_json_implies_no_console_and_keeps_steps_on_stderr(
    quickstart_flow: None,
) -> None:
    result = invoke("quickstart", "--json")
    assert result.exit_code == 0, result.output
    doc = document(result)
    assert set(doc) == {
        "tracking_uri", "champion", "url", "how", "deployment", "prometheus_url",
        "alertmanager_url", "sent", "failed",
    }  # fmt: skip
    assert (doc["url"], doc["champion"]["version"], doc["sent"]) == (
        "http://127.0.0.1:8081",
        1,
        450,
    )
    assert doc["tracking_uri"] == ENV["MLFLOW_TRACKING_URI"]
    assert result.stderr.splitlines() == [
        f"tracking store: {ENV['MLFLOW_TRACKING_URI']}",
        "[1/6] training iris with {'n_estimators': '3'}",
        f"      run {'a' * 32}: accuracy 0.953 -> iris v1",
        "      Step 1/9 : FROM mlops-base:bookworm",
        "[4/6] serving iris@champion as a local process (pid 42) at http://127.0.0.1:8081",
    ]
    stopped = invoke("quickstart", "--stop", "--json")
    assert document(stopped) == {"stopped": ["mlops-quickstart"]}


def test_quickstart_without_json_prints_where_to_look_on_stdout(quickstart_flow: None) -> None:
    result = invoke("quickstart", "--no-console")
    assert result.exit_code == 0, result.output
    assert "watch it:   mlops monitor --target http://127.0.0.1:8081" in result.stdout
    assert "[1/6]" not in result.stdout and "[1/6] training iris" in result.stderr
