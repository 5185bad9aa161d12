"""An in-memory stand-in for every console capability (console.capabilities): fast, scriptable,
and it records calls. ``services(fake)`` hands it to the app as each capability, so mypy checks
it against every protocol."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from backends.errors import BackendError, Conflict, GateFailed, InvalidInput, NotFound, Unavailable
from backends.mlflow.models import parse_reference
from backends.records import (
    AliasEvent,
    AliasRollbackPlan,
    AliasState,
    ApprovePlan,
    BuildOutcome,
    CanaryCheck,
    CanaryRelease,
    Deployment,
    DeploymentHealth,
    DeployOutcome,
    DeployPlan,
    DriftThresholds,
    Experiment,
    FeatureDrift,
    GateCheck,
    GateReport,
    GateResult,
    LatencySummary,
    MetricPoint,
    MetricRow,
    MetricSeries,
    ModelVersion,
    MonitorHistory,
    MonitorSnapshot,
    ParamRow,
    PendingApproval,
    PolicyReport,
    ProjectParameter,
    PromotePlan,
    RegisteredModel,
    RetrainOutcome,
    RetrainTrigger,
    RollbackOutcome,
    RollbackPlan,
    RunComparison,
    RunDetail,
    RunListing,
    RunSummary,
    Series,
    ServingImage,
    TakeDownOutcome,
    TakeDownPlan,
    TrainingOutcome,
)
from backends.records.alerts import (
    AlertGroup,
    AlertsView,
    ExpirePlan,
    ManagedAlert,
    Matcher,
    Silence,
    SilencePlan,
)
from console.config import Settings
from console.services import Services

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def settings(**overrides: object) -> Settings:
    base: dict[str, object] = dict(
        tracking_uri="http://mlflow.example:5000",
        docker_host=None,
        prometheus_url=None,
        context="staging",
    )
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


def run(i: int, accuracy: float, n_estimators: str) -> RunSummary:
    return RunSummary(
        run_id=f"run{i:029d}",
        experiment_id="1",
        name=f"run-{i}",
        status="FINISHED",
        start_time=T0 + timedelta(minutes=i),
        end_time=T0 + timedelta(minutes=i, seconds=42),
        user="ana",
        params={"n_estimators": n_estimators, "seed": "7"},
        metrics={"accuracy": accuracy, "f1": accuracy - 0.01},
        tags={},
    )


def version(v: int, aliases: tuple[str, ...] = ()) -> ModelVersion:
    return ModelVersion(
        name="iris",
        version=v,
        run_id=f"run{v:029d}",
        metrics={"accuracy": 0.9 + v / 100},
        aliases=aliases,
        tags={},
        created=T0,
        status="READY",
        stage=None,
        source="models:/m-1",
    )


def event(seq: int, alias: str, before: int | None, after: int, action: str) -> AliasEvent:
    return AliasEvent(
        id=f"{seq}.x",
        model="iris",
        alias=alias,
        seq=seq,
        action=action,  # type: ignore[arg-type]
        from_version=before,
        to_version=after,
        who="ana",
        at=T0 + timedelta(hours=seq),
        reason="",
    )


@dataclass
class FakeBackends:
    """Answers from lists; ``down`` names backends that fail their next N calls."""

    runs: list[RunSummary] = field(
        default_factory=lambda: [run(1, 0.91, "100"), run(2, 0.95, "200"), run(3, 0.93, "50")]
    )
    aliases: dict[str, int] = field(default_factory=lambda: {"champion": 1})
    events: list[AliasEvent] = field(
        default_factory=lambda: [event(1, "champion", None, 1, "promote")]
    )
    deployments: list[Deployment] = field(default_factory=list)
    # Challengers waiting for approval: derived from ``aliases`` (challenger ≠ champion),
    # with this trigger and gate report.
    pending_report: GateReport | None = None
    pending_trigger: RetrainTrigger | None = None
    down: dict[str, int] = field(default_factory=dict)  # backend → data calls left to fail
    probe_down: dict[str, int] = field(default_factory=dict)  # backend → probes left to fail
    calls: list[tuple[object, ...]] = field(default_factory=list)
    gate_passes: bool = True
    policy_report: PolicyReport | None = None  # what the gate's policy found, when it has one
    failing: dict[str, BackendError] = field(default_factory=dict)  # method → its next error
    images: set[int] = field(default_factory=lambda: {1, 2})  # versions with an image
    experiments: list[str] = field(default_factory=lambda: ["iris", "Default"])
    page_size: int = 200
    list_delay: float = 0.0  # seconds each list_runs takes (a slow tracking server)
    index_cold: bool = False  # the local run index needs its first (slow) full sync
    # When set, a sync waits for it: a test holds an index build open for as long as it needs,
    # whatever the machine's speed (a fixed delay raced the console on a loaded machine).
    sync_gate: threading.Event | None = None
    rollback_image_gone: bool = False  # the older version's image was removed
    canaries: list[CanaryRelease] = field(default_factory=list)  # canary releases on record

    def _maybe_down(self, backend: str, counts: dict[str, int] | None = None) -> None:
        counts = self.down if counts is None else counts
        left = counts.get(backend, 0)
        if left:
            counts[backend] = left - 1
            raise Unavailable(f"{backend} refused the connection", title=f"{backend} unreachable")

    def probe(self, backend: str) -> None:
        self._maybe_down(backend, self.probe_down)

    # runs
    def list_experiments(self) -> list[Experiment]:
        self.calls.append(("list_experiments",))
        self._maybe_down("mlflow")
        return [Experiment(str(i), name, T0, {}) for i, name in enumerate(self.experiments)]

    def list_runs(
        self,
        experiment: str,
        filter_string: str,
        order_by: list[str],
        offset: int = 0,
        quick: bool = False,
    ) -> RunListing:
        self.calls.append(("list_runs", experiment, filter_string, tuple(order_by), offset))
        self._maybe_down("mlflow")
        self._maybe_fail("list_runs")
        if self.list_delay:
            time.sleep(self.list_delay)
        runs = list(self.runs)
        if filter_string:
            runs = [r for r in runs if r.metrics["accuracy"] > 0.92]
        for term in reversed(order_by):  # a stable sort per term, last term first
            key, _, direction = term.partition(" ")
            kind, _, name = key.partition(".")
            name = name.strip("`")

            def value(r: RunSummary, kind: str = kind, name: str = name) -> Any:
                return (r.metrics if kind == "metrics" else r.params).get(name, 0)

            runs.sort(key=value, reverse=direction == "DESC")
        page = runs[offset : offset + self.page_size]
        return RunListing(
            runs=tuple(page),
            experiment_id="1",
            experiment_name=experiment,
            source="server" if self.index_cold else "index",
            synced_at=T0,
            verified_at=T0,
            matched=len(runs),
            more=offset + len(page) < len(runs),
            index_pending=self.index_cold,
        )

    def sync_runs(self, experiment: str) -> None:
        self.calls.append(("sync_runs", experiment))
        self._maybe_down("mlflow")
        if self.sync_gate is not None:
            self.sync_gate.wait(timeout=120)
        self.index_cold = False

    def project_parameters(self, project: str) -> list[ProjectParameter]:
        self.calls.append(("project_parameters", project))
        if not project.endswith("iris"):
            raise InvalidInput(f"{project} is not an MLflow Project (no MLproject file)")
        return [
            ProjectParameter("n_estimators", "int", "100"),
            ProjectParameter("seed", "int", "42"),
            ProjectParameter("data", "string", "bundled:iris"),
        ]

    def show_run(self, run_id: str) -> RunDetail:
        self.calls.append(("show_run", run_id))
        found = next(r for r in self.runs if r.run_id == run_id)
        return RunDetail(found, "iris", "file:///tmp/a", (), (), "abc123", "train.py")

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        self.calls.append(("compare_runs", *run_ids))
        runs = tuple(r for r in self.runs if r.run_id in run_ids)
        accuracy = tuple(r.metrics["accuracy"] for r in runs)
        best = accuracy.index(max(accuracy))
        history = tuple(
            MetricSeries(
                r.run_id, "accuracy", (MetricPoint(0, T0, r.metrics["accuracy"]),), 1, False
            )
            for r in runs
        )
        return RunComparison(
            runs=runs,
            params_differ=(
                ParamRow("n_estimators", tuple(r.params["n_estimators"] for r in runs)),
            ),
            params_agree=(ParamRow("seed", tuple("7" for _ in runs)),),
            metrics=(MetricRow("accuracy", accuracy, "max", (best,)),),
            same_data=True,
            histories={"accuracy": history},
        )

    def train(
        self, project: str, params: dict[str, str], on_line: Callable[[str], object]
    ) -> TrainingOutcome:
        self.calls.append(("train", project, params))
        for line in ("epoch 1", "run_id=abc123 accuracy=0.95"):
            on_line(line)
        return TrainingOutcome("abc123", "FINISHED", 0, "/tmp/abc123.log")

    def register(self, run_id: str, name: str) -> ModelVersion:
        self.calls.append(("register", run_id, name))
        return version(3)

    # registry
    def list_models(self) -> list[RegisteredModel]:
        self.calls.append(("list_models",))
        self._maybe_down("mlflow")
        return [RegisteredModel("iris", "", dict(self.aliases), {}, 2, T0, T0)]

    def versions(self, model: str) -> list[ModelVersion]:
        self.calls.append(("versions", model))
        return [
            version(v, tuple(sorted(a for a, held in self.aliases.items() if held == v)))
            for v in (2, 1)
        ]

    def history(self, model: str) -> list[AliasEvent]:
        self.calls.append(("history", model))
        return list(self.events)

    def _seen(self, model: str, alias: str) -> AliasState:
        if model != "iris":  # ``aliases`` and ``events`` are iris's; other models have none
            return AliasState(model, alias, None, None)
        last = next((e for e in reversed(self.events) if e.alias == alias), None)
        return AliasState(model, alias, self.aliases.get(alias), last.id if last else None)

    def _check_seen(self, seen: AliasState) -> None:
        if self._seen(seen.model, seen.alias) != seen:
            now = self.aliases.get(seen.alias)
            raise Conflict(
                f"{seen.alias} of {seen.model} moved since you read it (at version "
                f"{seen.version}): bob moved it to version {now}; nothing moved"
            )

    def plan_promote(self, model: str, version: int, alias: str) -> PromotePlan:
        self.calls.append(("plan_promote", model, version, alias))
        self._maybe_fail("plan_promote")
        return PromotePlan(model, version, alias, self._seen(model, alias))

    def validate(self, model: str, version: int, alias: str) -> GateResult:
        self.calls.append(("validate", model, version, alias))
        self._maybe_fail("validate")
        check = GateCheck("predict", self.gate_passes, "loads and predicts 5 rows")
        policy = self.policy_report
        passed = self.gate_passes and (policy is None or policy.passed)
        return GateResult(model, version, alias, (check,), passed, policy)

    def promote(self, plan: PromotePlan) -> tuple[GateResult, AliasEvent | None]:
        model, v, alias = plan.model, plan.version, plan.alias
        self.calls.append(("promote", model, v, alias))
        check = GateCheck("predict", self.gate_passes, "loads and predicts 5 rows")
        if not self.gate_passes:
            raise BackendError(f"version {v} of {model} did not pass: predict", title="Gate failed")
        self._check_seen(plan.seen)
        before = self.aliases.get(alias)
        self.aliases[alias] = v
        moved = event(len(self.events) + 1, alias, before, v, "promote")
        self.events.append(moved)
        return GateResult(model, v, alias, (check,), True), moved

    def pending_approvals(self) -> list[PendingApproval]:
        # Polled by the app in the background: not recorded in ``calls``, whose order tests
        # read for what the operator's keys did, and not spending ``down``'s failures, which
        # tests count out for the probes and screens.
        waiting = self.aliases.get("challenger")
        if waiting is None or waiting == self.aliases.get("champion"):
            return []
        champion = self.aliases.get("champion")
        return [
            PendingApproval(
                "iris",
                waiting,
                champion,
                T0,
                f"run{waiting}",
                self.pending_report,
                self.pending_trigger,
            )
        ]

    def plan_approve(self, model: str, version: int) -> ApprovePlan:
        self.calls.append(("plan_approve", model, version))
        waiting = next((p for p in self.pending_approvals() if p.version == version), None)
        if waiting is None:
            raise Conflict(f"{model} v{version} is not the challenger waiting for approval")
        return ApprovePlan(
            model, version, self._seen(model, "champion"), self._seen(model, "challenger"), waiting
        )

    def approve(self, plan: ApprovePlan) -> tuple[GateResult, AliasEvent]:
        self.calls.append(("approve", plan.model, plan.version))
        self._check_seen(plan.challenger)
        self._check_seen(plan.seen)
        before = self.aliases.get("champion")
        self.aliases["champion"] = plan.version
        moved = event(len(self.events) + 1, "champion", before, plan.version, "approve")
        self.events.append(moved)
        check = GateCheck("predict", True, "loads and predicts 5 rows")
        return GateResult(plan.model, plan.version, "champion", (check,), True), moved

    def plan_rollback(self, model: str, alias: str) -> AliasRollbackPlan:
        self.calls.append(("plan_rollback", model, alias))
        from backends.mlflow.history import rollback_target

        seen = self._seen(model, alias)
        target = rollback_target([e for e in self.events if e.alias == alias], seen.version)
        if target is None:
            raise GateFailed(
                f"{alias} of {model} has no earlier version to roll back to",
                title="Nothing to roll back to",
            )
        return AliasRollbackPlan(model, alias, seen, target)

    def rollback(self, plan: AliasRollbackPlan) -> AliasEvent | None:
        self.calls.append(("rollback", plan.model, plan.alias))
        self._check_seen(plan.seen)
        before = self.aliases[plan.alias]
        self.aliases[plan.alias] = plan.to_version
        moved = event(len(self.events) + 1, plan.alias, before, plan.to_version, "rollback")
        self.events.append(moved)
        return moved

    # deployments
    def list_deployments(self) -> list[Deployment]:
        self.calls.append(("list_deployments",))
        self._maybe_down("docker")
        return list(self.deployments)

    def deployment_logs(self, name: str, tail: int) -> Iterator[str]:
        self.calls.append(("deployment_logs", name))
        yield from [f"{name}: started", f"{name}: ready on :8080"]

    def _deployment(self, name: str) -> Deployment:
        found = next((d for d in self.deployments if d.name == name), None)
        if found is None:
            raise NotFound(f"no deployment named {name!r}")
        return found

    def _check_unchanged(self, planned: Deployment | None, name: str) -> None:
        now = next((d for d in self.deployments if d.name == name), None)
        if now != planned:
            raise Conflict(f"deployment {name!r} changed since the plan; nothing changed")

    def plan_rollback_deployment(self, name: str) -> RollbackPlan:
        self.calls.append(("plan_rollback", name))
        d = self._deployment(name)
        if d.follow_alias:
            seen = self._seen(d.model, d.alias or "champion")
            return RollbackPlan(name, d.model, 3, 1, d, alias=d.alias or "champion", seen=seen)
        return RollbackPlan(name, d.model, d.version, 1, d, image_missing=self.rollback_image_gone)

    def rollback_deployment(
        self, plan: RollbackPlan, on_log: Callable[[str], None]
    ) -> RollbackOutcome:
        self.calls.append(("rollback_deployment", plan.name, plan.to_version))
        self._check_unchanged(plan.current, plan.name)
        d = self._deployment(plan.name)
        return RollbackOutcome(plan.name, d.model, d.version, plan.to_version, deployment=d)

    def _maybe_fail(self, method: str) -> None:
        if method in self.failing:
            raise self.failing.pop(method)

    def build_image(self, reference: str, on_log: Callable[[str], None]) -> BuildOutcome:
        self.calls.append(("build_image", reference))
        self._maybe_fail("build_image")
        resolved = self._resolve(reference)
        cached = resolved.version in self.images
        for line in ("Step 1/2 : FROM mlops-base", " ---> 0b0c592e9f60", "Step 2/2 : COPY"):
            on_log(line)
        self.images.add(resolved.version)
        return BuildOutcome(serving_image(resolved.version), resolved, cached)

    def plan_deploy(
        self, reference: str, name: str | None, port: int, host: str, follow_alias: bool
    ) -> DeployPlan:
        self.calls.append(("plan_deploy", reference, name, port, host, follow_alias))
        self._maybe_fail("plan_deploy")
        resolved = self._resolve(reference)
        _, alias, _ = parse_reference(reference)
        name = name or resolved.name
        current = next((d for d in self.deployments if d.name == name), None)
        image = serving_image(resolved.version) if resolved.version in self.images else None
        return DeployPlan(
            reference, resolved, alias or "", name, host, port, follow_alias, current, image
        )

    def deploy(self, plan: DeployPlan, on_log: Callable[[str], None]) -> DeployOutcome:
        self.calls.append(("deploy", plan.reference, plan.name, plan.version.version))
        self._maybe_fail("deploy")
        self._check_unchanged(plan.current, plan.name)
        built = plan.version.version not in self.images
        self.images.add(plan.version.version)
        new = deployment(plan.name, plan.version.version)
        self.deployments = [d for d in self.deployments if d.name != plan.name] + [new]
        return DeployOutcome(new, plan.replaces, serving_image(plan.version.version), built)

    def _resolve(self, reference: str) -> ModelVersion:
        model, alias, number = parse_reference(reference)
        if alias is not None and alias not in self.aliases:
            raise NotFound(f"{model} has no alias {alias!r}")
        v = self.aliases[alias] if alias is not None else number
        assert v is not None
        resolved = version(v)
        return ModelVersion(**{**resolved.__dict__, "name": model})

    def plan_take_down(self, name: str) -> TakeDownPlan:
        self.calls.append(("plan_take_down", name))
        return TakeDownPlan(name, self._deployment(name), (f"mlops-{name}",))

    def take_down(self, plan: TakeDownPlan) -> TakeDownOutcome:
        self.calls.append(("remove_deployment", plan.name))
        self._check_unchanged(plan.current, plan.name)
        self.deployments = [d for d in self.deployments if d.name != plan.name]
        return TakeDownOutcome(plan.name, (f"mlops-{plan.name}",))

    # canary releases
    def canary_releases(self) -> list[CanaryRelease]:
        self.calls.append(("canary_releases",))
        self._maybe_fail("canary_releases")
        return list(self.canaries)

    def decide_canary(self, name: str, command: str) -> CanaryRelease:
        """As the analysis' state machine decides: resume only a paused release, abort and
        promote a running or paused one; the release then shows what the worker did."""
        self.calls.append(("decide_canary", name, command))
        self._maybe_fail("decide_canary")
        found = next((r for r in self.canaries if r.deployment == name), None)
        if found is None:
            raise NotFound(f"no canary release of {name!r} here")
        allowed = ("paused",) if command == "resume" else ("running", "paused")
        if found.status not in allowed:
            hint = {
                "paused": "it is paused: resume, abort or promote it",
                "running": "it is running, not paused",
            }.get(found.status, f"it is already {found.status}")
            raise Conflict(f"cannot {command} the canary: {hint}", title="Canary analysis")
        status = {"resume": "running", "abort": "aborted", "promote": "promoted"}[command]
        weight = {"resume": found.weight, "abort": 0.0, "promote": 100.0}[command]
        done = replace(
            found,
            status=status,
            weight=weight,
            step=len(found.steps) if command == "promote" else found.step,
            last=f"{command} by the operator at {found.weight:g} %",
            next_evaluation=None
            if status != "running"
            else datetime.now(UTC) + timedelta(minutes=1),
            updated=datetime.now(UTC),
        )
        self.canaries = [done if r is found else r for r in self.canaries]
        return done

    def monitor(self) -> MonitorSnapshot:
        self.calls.append(("monitor",))
        self._maybe_down("metrics")
        row = DeploymentHealth(
            deployment="iris-prod",
            model="iris",
            version=2,
            alias="champion",
            instance="127.0.0.1:8080",
            up=True,
            requests_total=100.0,
            request_rate=12.5,
            error_ratio=0.01,
            client_error_ratio=0.0,
            latency=LatencySummary(0.004, 0.012, 0.030),
            batch_size_mean=1.0,
            drift=(
                FeatureDrift("petal_length", 0.35, None, 0.01, True),
                FeatureDrift("sepal_width", 0.02, None, 0.6, False),
            ),
            drift_window_rows=500.0,
            quality={"accuracy": 0.93, "f1_macro": 0.91},
            labelled_rows=412.0,
            label_coverage=0.41,
        )
        return MonitorSnapshot("direct scrape", 2.0, T0, (row,), None)

    def monitor_history(
        self, deployment: str, minutes: float, instance: str = ""
    ) -> MonitorHistory:
        self.calls.append(("monitor_history", deployment, minutes))
        self._maybe_down("history")
        t = T0.timestamp()
        figures = {"request_rate": (10.0, 12.5), "error_ratio": (0.0, 0.01)}
        figures |= {"p50": (0.003, 0.004), "p95": (0.010, 0.012), "p99": (0.020, 0.030)}
        figures |= {"accuracy": (0.95, 0.93)}
        series = tuple(Series(name, {}, ((t - 120, a), (t, b))) for name, (a, b) in figures.items())
        return MonitorHistory(deployment or instance, "recorded snapshots", T0, minutes, series)

    def drift_thresholds(self, model: str, version: int | None) -> DriftThresholds:
        self.calls.append(("drift_thresholds", model, version))
        self._maybe_fail("drift_thresholds")
        return DriftThresholds(0.2, 0.05, "drift_reference.json of run r")

    def retrain(
        self, deployment: str, data: str, on_line: Callable[[str], object]
    ) -> RetrainOutcome:
        self.calls.append(("retrain", deployment, data))
        on_line("training examples/iris with {'data': '" + data + "'}")
        self._maybe_fail("retrain")
        return RetrainOutcome(
            deployment=deployment,
            model="iris",
            served_version=2,
            served_run_id="r",
            drift="drift: petal_length PSI=0.35 KS p=0.01 (thresholds PSI>0.2, p<0.05)",
            run_id="c" * 32,
            challenger_version=3,
            comparison="challenger not worse than champion on 150 evaluation rows: "
            "accuracy 0.9600 vs 0.9533 (tolerance 0)",
            champion_score=0.9533,
            challenger_score=0.96,
            gate_passed=True,
            gate="challenger -> iris v3 (gate passed)",
            log_path="/tmp/ccc.log",
        )


def deployment(name: str = "iris-prod", version: int = 2) -> Deployment:
    return Deployment(
        name=name,
        model="iris",
        version=version,
        alias="champion",
        run_id="r",
        image="mlops/iris:v2-run00000",
        container_id="abc",
        state="running",
        health="healthy",
        host="127.0.0.1",
        port=8080,
        started_at=T0,
    )


def canary_release(
    name: str = "iris-prod", status: str = "running", next_in: float = 42.0, **overrides: Any
) -> CanaryRelease:
    """v3 at 25 % beside stable v2, step 2 of 4, one failed evaluation of two; its checks
    last passed, failed and were inconclusive; the next evaluation ``next_in`` s from now."""
    base: dict[str, Any] = dict(
        deployment=name,
        model="iris",
        stable_version=2,
        canary_version=3,
        status=status,
        weight=25.0,
        step=2,
        steps=(10.0, 25.0, 50.0, 100.0),
        failures=1,
        failure_limit=2,
        interval=60.0,
        checks=(
            CanaryCheck("error_ratio < 0.01", "pass", "error_ratio 0.002 < 0.01"),
            CanaryCheck("p99 < 0.25 s", "fail", "p99 0.31 s < 0.25 s"),
            CanaryCheck(
                "accuracy ≥ stable - 0.02",
                "inconclusive",
                "accuracy n/a ≥ 0.93 (stable 0.95 - 0.02)",
            ),
        ),
        next_evaluation=(
            datetime.now(UTC) + timedelta(seconds=next_in) if status == "running" else None
        ),
        updated=datetime.now(UTC),
        last="failed evaluation 1/2, staying at 25 %: p99 0.31 s < 0.25 s ✗",
        worker_running=True,
        figures={
            "stable": {
                "request_rate": 9.5,
                "error_ratio": 0.001,
                "p50": 0.004,
                "p95": 0.012,
                "p99": 0.03,
                "accuracy": 0.95,
            },
            "canary": {
                "request_rate": 3.2,
                "error_ratio": 0.002,
                "p50": 0.005,
                "p95": 0.09,
                "p99": 0.31,
                "accuracy": None,
            },
        },
    )
    base.update(overrides)
    return CanaryRelease(**base)


def serving_image(version: int) -> ServingImage:
    return ServingImage(
        id=f"img{version}abc",
        tags=(f"mlops/iris:v{version}",),
        model="iris",
        version=version,
        run_id=f"run{version:029d}",
        size_bytes=700_000_000,
        created=T0,
    )


def screen_text(app: object) -> str:
    """Everything the current screen shows, as plain text (tables included)."""
    from textual.widgets import DataTable, OptionList, Static

    screen = app.screen  # type: ignore[attr-defined]
    parts: list[str] = []
    for widget in screen.query("*"):
        if widget.border_title:
            parts.append(str(widget.border_title))
        if isinstance(widget, OptionList):
            parts += [str(widget.get_option_at_index(i).prompt) for i in range(widget.option_count)]
        elif isinstance(widget, DataTable):
            parts += [str(c.label) for c in widget.columns.values()]
            for row in range(widget.row_count):
                parts += [str(cell) for cell in widget.get_row_at(row)]
        elif isinstance(widget, Static):
            parts.append(str(widget.render()))
    return "\n".join(parts)


class FakeDeployments:
    """The deployments capability of a FakeBackends (its rollback is not the registry's)."""

    def __init__(self, fake: FakeBackends) -> None:
        self.fake = fake

    def list_deployments(self) -> list[Deployment]:
        return self.fake.list_deployments()

    def deployment_logs(self, name: str, tail: int) -> Iterator[str]:
        return self.fake.deployment_logs(name, tail)

    def build_image(self, reference: str, on_log: Callable[[str], None]) -> BuildOutcome:
        return self.fake.build_image(reference, on_log)

    def plan_deploy(
        self, reference: str, name: str | None, port: int, host: str, follow_alias: bool
    ) -> DeployPlan:
        return self.fake.plan_deploy(reference, name, port, host, follow_alias)

    def deploy(self, plan: DeployPlan, on_log: Callable[[str], None]) -> DeployOutcome:
        return self.fake.deploy(plan, on_log)

    def plan_rollback(self, name: str) -> RollbackPlan:
        return self.fake.plan_rollback_deployment(name)

    def rollback(self, plan: RollbackPlan, on_log: Callable[[str], None]) -> RollbackOutcome:
        return self.fake.rollback_deployment(plan, on_log)

    def plan_take_down(self, name: str) -> TakeDownPlan:
        return self.fake.plan_take_down(name)

    def take_down(self, plan: TakeDownPlan) -> TakeDownOutcome:
        return self.fake.take_down(plan)


def services(fake: FakeBackends, alerts: FakeAlerts | None = None) -> Services:
    """``fake`` as every capability the app uses (type-checked against each protocol)."""
    return Services(
        probes=fake,
        runs=fake,
        registry=fake,
        deployments=FakeDeployments(fake),
        monitoring=fake,
        alerts=alerts or FakeAlerts(),
        canaries=fake,
    )


@dataclass
class FakeAlerts:
    """Alert groups and silences in memory, matched as Alertmanager matches (our matchers);
    ``down`` fails the next N reads, ``read_only`` stands for Prometheus' own alerts."""

    groups: list[AlertGroup] = field(default_factory=list)
    silences: list[Silence] = field(default_factory=list)
    read_only: bool = False
    down: int = 0
    posted: list[SilencePlan] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)

    def alerts(self) -> AlertsView:
        if self.down:
            self.down -= 1
            raise Unavailable(
                "Alertmanager at http://am:9093 is unreachable (ConnectError)",
                title="Alertmanager unreachable",
            )
        source = (
            "prometheus http://p:9090 (read-only)"
            if self.read_only
            else "alertmanager http://am:9093"
        )
        return AlertsView(source, self.read_only, T0, tuple(self._quieted()), tuple(self.silences))

    def _quieted(self) -> list[AlertGroup]:
        from dataclasses import replace

        from backends.prometheus.matchers import matches_all

        out = []
        for g in self.groups:
            alerts = []
            for a in g.alerts:
                by = tuple(
                    s.id
                    for s in self.silences
                    if s.state == "active" and matches_all(s.matchers, a.labels)
                )
                alerts.append(replace(a, state="suppressed" if by else "active", silenced_by=by))
            out.append(replace(g, alerts=tuple(alerts)))
        return out

    def plan_acknowledge(self, group: str, minutes: float) -> SilencePlan:
        found = next((g for g in self.groups if g.id.startswith(group)), None)
        if found is None:
            raise NotFound(f"no alert group {group!r}")
        matchers = tuple(Matcher(k, v) for k, v in sorted(found.labels.items()))
        return self._plan(matchers, minutes, "acknowledged by tester", acknowledges=found.id)

    def plan_silence(self, matchers: list[str], minutes: float, comment: str) -> SilencePlan:
        from backends.prometheus.matchers import check_silenceable, parse_matchers

        parsed = parse_matchers(matchers)
        check_silenceable(parsed)
        return self._plan(parsed, minutes, comment)

    def _plan(
        self, matchers: tuple[Matcher, ...], minutes: float, comment: str, acknowledges: str = ""
    ) -> SilencePlan:
        from backends.prometheus.matchers import matches_all

        matching = tuple(
            a for g in self.groups for a in g.alerts if matches_all(matchers, a.labels)
        )
        ends = T0 + timedelta(minutes=minutes)
        return SilencePlan(matchers, T0, ends, "tester", comment, matching, acknowledges)

    def silence(self, plan: SilencePlan) -> str:
        self.posted.append(plan)
        silence_id = f"{len(self.posted):08d}-silence"
        self.silences.append(
            Silence(
                silence_id,
                plan.matchers,
                plan.created_by,
                plan.comment,
                plan.starts_at,
                plan.ends_at,
                "active",
            )
        )
        return silence_id

    def plan_expire(self, silence_id: str) -> ExpirePlan:
        found = next((s for s in self.silences if s.id.startswith(silence_id)), None)
        if found is None:
            raise NotFound(f"no silence {silence_id!r}")
        quieted = tuple(a for g in self._quieted() for a in g.alerts if found.id in a.silenced_by)
        return ExpirePlan(found, quieted)

    def expire(self, plan: ExpirePlan) -> None:
        from dataclasses import replace

        self.expired.append(plan.silence.id)
        self.silences = [
            replace(s, state="expired") if s.id == plan.silence.id else s for s in self.silences
        ]


def managed(name: str, deployment: str, severity: str = "warning", **labels: str) -> ManagedAlert:
    all_labels = {"alertname": name, "severity": severity, "deployment": deployment, **labels}
    return ManagedAlert(
        name=name,
        labels=all_labels,
        annotations={
            "summary": f"{name} on {deployment}",
            "description": f"{name} has fired for {deployment}.",
            "runbook_url": f"docs/runbooks/{name}.md",
        },
        state="active",
        starts_at=T0,
        fingerprint=f"{name}-{deployment}-{sorted(labels.items())}",
    )


def group(*alerts: ManagedAlert) -> AlertGroup:
    from backends.prometheus.alertmanager import group_id

    labels = {k: alerts[0].labels[k] for k in ("alertname", "deployment")}
    return AlertGroup(group_id(labels), labels, "team", tuple(alerts))
