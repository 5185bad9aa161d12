"""Messages the console's workers post back to the UI thread, named as events that happened."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textual.message import Message

from backends.errors import BackendError
from backends.records import (
    AliasEvent,
    Deployment,
    GateResult,
    ModelVersion,
    MonitorSnapshot,
    RegisteredModel,
    RunComparison,
    RunDetail,
    RunListing,
)
from console.services import TrainingOutcome


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
    """A page of runs arrived."""

    listing: RunListing


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
class DeploymentChanged(Message):
    """A deployment was rolled back or taken down."""

    name: str
    summary: str


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
class TrainingOutput(Message):
    """Lines the training printed."""

    lines: list[str]


@dataclass
class TrainingEnded(Message):
    """The training process ended (``outcome`` from console.services)."""

    outcome: TrainingOutcome


@dataclass
class ModelRegistered(Message):
    """A run's model became a new version."""

    version: ModelVersion
