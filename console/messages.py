"""Messages the console's workers post back to the UI thread, named as events that happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from textual.message import Message

from backends.errors import BackendError

if TYPE_CHECKING:
    # Types only: records (~40 dataclasses) and the deploy form are imported by the
    # workers that build them, not before the first paint.
    from backends.records import (
        AliasEvent,
        AliasRollbackPlan,
        ApprovePlan,
        BuildOutcome,
        CanaryRelease,
        Deployment,
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
        RollbackPlan,
        RunComparison,
        RunDetail,
        RunListing,
        TakeDownPlan,
        TrainingOutcome,
    )
    from backends.records.alerts import AlertsView, ExpirePlan, SilencePlan
    from console.modals.deploy_forms import DeployRequest


@dataclass
class BackendProbed(Message):
    """A backend answered a probe (``error`` empty) or did not."""

    backend: str
    reachable: bool
    at: datetime
    error: str = ""


@dataclass
class BackendFailed(Message):
    """A backend call made for a screen failed; the screen shows it and may retry.

    Anything else a backend raises arrives as a BackendError too: nothing it does ends the app.
    """

    what: str
    error: BackendError | Exception

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.error, BackendError):
            self.error = BackendError(
                f"{type(self.error).__name__}: {self.error}", title="Unexpected error"
            )


@dataclass
class RunsLoaded(Message):
    """A page of runs arrived: ``offset`` 0 starts a listing, more pages append to it.

    ``generation`` names the load that asked; a page of an older load (another filter, order
    or experiment) is dropped when it arrives late.
    """

    listing: RunListing
    offset: int = 0
    generation: int = 0


@dataclass
class ProjectLoaded(Message):
    """A project's MLproject parameters arrived (for the train form)."""

    project: str
    parameters: list[ProjectParameter]


@dataclass
class RunIndexSynced(Message):
    """A background full sync of the run index ended (``error`` empty on success)."""

    experiment: str
    error: str = ""


@dataclass
class ExperimentsLoaded(Message):
    """The experiment list arrived (None: it could not be read)."""

    experiments: list[Experiment] | None


@dataclass
class RunDetailLoaded(Message):
    """One run's details arrived."""

    detail: RunDetail


@dataclass
class RunsCompared(Message):
    """A comparison of the marked runs arrived."""

    comparison: RunComparison


@dataclass
class ModelsLoaded(Message):
    """The registered models arrived."""

    models: list[RegisteredModel]


@dataclass
class VersionsLoaded(Message):
    """The versions of one model arrived."""

    model: str
    versions: list[ModelVersion]


@dataclass
class AliasHistoryLoaded(Message):
    """The alias history of one model arrived."""

    model: str
    events: list[AliasEvent]


@dataclass
class PromotePlanned(Message):
    """A promotion was planned (the alias as it is now) and its gate run: the operator sees
    the gate's report and confirms what it moves."""

    plan: PromotePlan
    gate: GateResult | None = None


@dataclass
class ApprovePlanned(Message):
    """An approval was planned: the operator confirms, seeing the gate report and trigger."""

    plan: ApprovePlan


@dataclass
class PendingApprovals(Message):
    """The challengers waiting for a person, as the app's poll found them."""

    pending: list[PendingApproval]


@dataclass
class AliasRollbackPlanned(Message):
    """An alias rollback was planned: the operator confirms from which version to which."""

    plan: AliasRollbackPlan


@dataclass
class AliasMoved(Message):
    """A promote or rollback moved an alias (``event`` None: it already pointed there)."""

    model: str
    alias: str
    event: AliasEvent | None
    gate: GateResult | None = None


@dataclass
class DeploymentsLoaded(Message):
    """The live map of deployments arrived."""

    deployments: list[Deployment]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DeploymentsLoaded)


@dataclass
class CanariesLoaded(Message):
    """The canary releases on record were read (``error``: why they could not be)."""

    releases: list[CanaryRelease]
    error: str = ""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, CanariesLoaded)


@dataclass
class CanaryDecided(Message):
    """A person's resume, abort or promote of a canary release was carried out."""

    release: CanaryRelease
    command: str


@dataclass
class DeploymentChanged(Message):
    """A deployment was deployed, rolled back or taken down."""

    name: str
    summary: str


@dataclass
class TakeDownPlanned(Message):
    """Taking a deployment down was planned: the operator confirms what goes."""

    plan: TakeDownPlan


@dataclass
class RollbackPlanned(Message):
    """What a deployment rollback would change, ready for its confirmation."""

    plan: RollbackPlan


@dataclass
class DeployPlanFailed(BackendFailed):
    """Planning a deploy failed (a port in use, an unknown version): the error is shown, then
    the form again with what the operator typed, not an empty one."""

    request: DeployRequest


@dataclass
class DeployPlanned(Message):
    """A deploy was planned (nothing changed yet): the operator confirms what it will do."""

    plan: DeployPlan


@dataclass
class ImageBuilt(Message):
    """A serving image was built (or found unchanged in the cache)."""

    outcome: BuildOutcome


@dataclass
class DeployProgressed(Message):
    """A running build, deploy or rollback (``task``) printed ``line``; only the newest matters."""

    task: str
    line: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, DeployProgressed) and message.task == self.task


@dataclass
class DeployTaskEnded(Message):
    """A build, deploy or rollback (``task``) ended, however it ended; ``claimed`` names the
    deployment it held (empty for a build)."""

    task: str
    claimed: str = ""


@dataclass
class LogLinesRead(Message):
    """New log lines of a deployment arrived."""

    lines: list[str]


@dataclass
class MonitorSampled(Message):
    """A fresh monitoring snapshot arrived; only the newest one matters."""

    snapshot: MonitorSnapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, MonitorSampled)


@dataclass
class MonitorHistoryLoaded(Message):
    """The recent figures of one deployment arrived, for its plots."""

    history: MonitorHistory


@dataclass
class DriftThresholdsLoaded(Message):
    """The drift thresholds of a model version arrived (``error``: the defaults stand in)."""

    model: str
    version: int | None
    thresholds: DriftThresholds
    error: str = ""


@dataclass
class RetrainProgressed(Message):
    """A retraining printed a line; only the newest one is shown."""

    deployment: str
    line: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RetrainProgressed)


@dataclass
class RetrainFinished(Message):
    """A retraining registered a challenger (moved or not by its gate; champion never)."""

    outcome: RetrainOutcome


@dataclass
class TrainingOutput(Message):
    """Lines the training printed."""

    lines: list[str]


@dataclass
class TrainingEnded(Message):
    """The training process ended."""

    outcome: TrainingOutcome


@dataclass
class ModelRegistered(Message):
    """A run's model became a new version."""

    version: ModelVersion


@dataclass
class AlertsLoaded(Message):
    """The alerting source's groups and silences, read for the Alerts screen."""

    view: AlertsView


@dataclass
class SilencePlanned(Message):
    """A silence (or an acknowledgement) planned, with what it matches now, to confirm."""

    plan: SilencePlan


@dataclass
class ExpirePlanned(Message):
    """A silence to expire, read just before, to confirm."""

    plan: ExpirePlan


@dataclass
class AlertsChanged(Message):
    """A silence was posted or expired; one line saying which."""

    summary: str


@dataclass
class RunbookRead(Message):
    """An alert's runbook text (or where it is, when it is not a local page)."""

    alert: str
    text: str
