"""What the console asks of the outside world, as small capabilities (k9s' Lister, Describer...).

A screen holds the one capability it uses; ``Services`` (console.services) bundles the real
ones for a session, and tests pass fakes that mypy checks against these protocols. Every call
blocks: screens make them from worker threads only. Mutations are a plan (what the dialog
shows) and an apply of that plan, which refuses with Conflict when the state moved since.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from backends.records import (
        AliasEvent,
        AliasRollbackPlan,
        ApprovePlan,
        BuildOutcome,
        CanaryRelease,
        Deployment,
        DeployOutcome,
        DeployPlan,
        DriftThresholds,
        Experiment,
        GateResult,
        ModelVersion,
        MonitorHistory,
        MonitorSnapshot,
        PendingApproval,
        ProjectParameter,
        PromotePlan,
        RegisteredModel,
        RetrainOutcome,
        RollbackOutcome,
        RollbackPlan,
        RunComparison,
        RunDetail,
        RunListing,
        TakeDownOutcome,
        TakeDownPlan,
        TrainingOutcome,
    )
    from backends.records.alerts import AlertsView, ExpirePlan, SilencePlan

BackendName = Literal["mlflow", "docker", "metrics"]
BACKENDS: tuple[BackendName, ...] = ("mlflow", "docker", "metrics")
LogLine = Callable[[str], None]
CanaryCommand = Literal["resume", "abort", "promote"]


class Probes(Protocol):
    """Whether each backend answers (the status bar)."""

    def probe(self, backend: BackendName) -> None:
        """Return if ``backend`` answers; raise a BackendError if it does not."""


class Runs(Protocol):
    """Experiments, runs and training (the runs, compare and train screens)."""

    def list_experiments(self) -> list[Experiment]:
        """Active experiments, most recently updated first."""

    def list_runs(
        self,
        experiment: str,
        filter_string: str,
        order_by: list[str],
        offset: int = 0,
        quick: bool = False,
    ) -> RunListing:
        """A page of runs of ``experiment``; ``offset`` > 0 pages the first page's snapshot.

        Answers at once: when the local index needs a slow full sync (or, with ``quick``, any
        sync) the listing says ``index_pending`` and the caller runs ``sync_runs`` in the
        background, then lists again.
        """

    def sync_runs(self, experiment: str) -> None:
        """Bring the local run index of ``experiment`` fully up to date (seconds at 10k runs)."""

    def show_run(self, run_id: str) -> RunDetail:
        """One run's details."""

    def compare_runs(self, run_ids: list[str]) -> RunComparison:
        """Runs side by side."""

    def project_parameters(self, project: str) -> list[ProjectParameter]:
        """The parameters of a project's main entry point, from its MLproject file."""

    def train(
        self, project: str, params: dict[str, str], on_line: Callable[[str], object]
    ) -> TrainingOutcome:
        """Run an MLflow Project to the end, each output line to ``on_line``."""

    def register(self, run_id: str, name: str) -> ModelVersion:
        """Register the model a run logged as a new version of ``name``."""


class Registry(Protocol):
    """Registered models, their versions and aliases (the models and history screens)."""

    def list_models(self) -> list[RegisteredModel]:
        """Registered models."""

    def versions(self, model: str) -> list[ModelVersion]:
        """Versions of one model, newest first."""

    def history(self, model: str) -> list[AliasEvent]:
        """Every alias move of one model."""

    def plan_promote(self, model: str, version: int, alias: str) -> PromotePlan:
        """What promoting ``version`` to ``alias`` would move (the alias as it is now)."""

    def validate(self, model: str, version: int, alias: str) -> GateResult:
        """The promotion gate for ``version`` (its policy's report included); moves nothing."""

    def promote(self, plan: PromotePlan) -> tuple[GateResult, AliasEvent | None]:
        """Gate and move the alias as planned; Conflict if it moved since."""

    def plan_rollback(self, model: str, alias: str) -> AliasRollbackPlan:
        """Where rolling ``alias`` back would go; GateFailed when nowhere."""

    def rollback(self, plan: AliasRollbackPlan) -> AliasEvent | None:
        """Move the alias back as planned; Conflict if it moved since."""

    def pending_approvals(self) -> list[PendingApproval]:
        """Challengers waiting for a person, with their trigger and gate report."""

    def plan_approve(self, model: str, version: int) -> ApprovePlan:
        """What approving the challenger ``version`` would move; Conflict if it is not it."""

    def approve(self, plan: ApprovePlan) -> tuple[GateResult, AliasEvent]:
        """Make the challenger champion as planned, the operator recorded as approver."""


class Deployments(Protocol):
    """Images and deployments on the engine (the deployments and logs screens)."""

    def list_deployments(self) -> list[Deployment]:
        """The live map of deployments."""

    def deployment_logs(self, name: str, tail: int) -> Iterator[str]:
        """A deployment's log lines, following."""

    def build_image(self, reference: str, on_log: LogLine) -> BuildOutcome:
        """Build the serving image of a version, as `mlops image build`."""

    def plan_deploy(
        self, reference: str, name: str | None, port: int, host: str, follow_alias: bool
    ) -> DeployPlan:
        """What deploying ``reference`` as ``name`` would change; nothing changes yet."""

    def deploy(self, plan: DeployPlan, on_log: LogLine) -> DeployOutcome:
        """Run a deploy plan, as `mlops deploy up`; Conflict if the deployment moved since."""

    def plan_rollback(self, name: str) -> RollbackPlan:
        """What a deployment rollback would change (from → to, a build first or not)."""

    def rollback(self, plan: RollbackPlan, on_log: LogLine) -> RollbackOutcome:
        """Roll back as planned, as `mlops deploy rollback`; Conflict if anything moved."""

    def plan_take_down(self, name: str) -> TakeDownPlan:
        """What taking a deployment down would remove."""

    def take_down(self, plan: TakeDownPlan) -> TakeDownOutcome:
        """Take a deployment down as planned; Conflict if it changed since."""


class Canaries(Protocol):
    """Canary releases (the deployments and monitor screens): read from the file each
    release's worker keeps; a person's resume, abort or promote handed to that worker."""

    def canary_releases(self) -> list[CanaryRelease]:
        """Every release on record here, finished or not, newest first."""

    def decide_canary(self, name: str, command: CanaryCommand) -> CanaryRelease:
        """A person's ``command`` on deployment ``name``'s release, carried out (by its
        worker, or here when none runs); Conflict when the release's state refuses it."""


class Monitoring(Protocol):
    """Live figures, their history, drift thresholds, and retraining (the monitor screen)."""

    def monitor(self) -> MonitorSnapshot:
        """Rate, errors, latency and drift of every deployment."""

    def monitor_history(
        self, deployment: str, minutes: float, instance: str = ""
    ) -> MonitorHistory:
        """One deployment's (or a target's, by host:port) figures over the last ``minutes``."""

    def drift_thresholds(self, model: str, version: int | None) -> DriftThresholds:
        """The drift thresholds of a model version (its drift reference, else the defaults)."""

    def retrain(
        self, deployment: str, data: str, on_line: Callable[[str], object]
    ) -> RetrainOutcome:
        """Train, register and gate a challenger for a deployment's model; champion stays."""


class Alerts(Protocol):
    """Alert groups and silences (the Alerts screen): Alertmanager, or Prometheus read-only."""

    def alerts(self) -> AlertsView:
        """Groups with their alerts and states, and the silences."""

    def plan_acknowledge(self, group: str, minutes: float) -> SilencePlan:
        """A silence on exactly the group's labels, in the operator's name (not posted)."""

    def plan_silence(self, matchers: list[str], minutes: float, comment: str) -> SilencePlan:
        """A silence of the matchers, with the alerts they match now (not posted)."""

    def silence(self, plan: SilencePlan) -> str:
        """Post the planned silence; its id."""

    def plan_expire(self, silence_id: str) -> ExpirePlan:
        """The silence to expire (by id or its start), with what it quiets now."""

    def expire(self, plan: ExpirePlan) -> None:
        """Expire the silence as planned."""
