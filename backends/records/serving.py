"""Records of serving: images, deployments, and the plans and outcomes of builds, deploys,
rollbacks and take-downs.

A plan is what the operator is shown before anything changes; applying it refuses (Conflict)
when what it started from moved in between, and names what moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from backends.defaults import ALL_ADDRESSES
from backends.records.registry import AliasEvent, AliasState, ModelVersion


@dataclass(frozen=True)
class ServingImage:
    """A serving image we built: one model version baked in (labels org.mlops-console.*)."""

    id: str
    tags: tuple[str, ...]
    model: str
    version: int | None
    run_id: str
    size_bytes: int
    created: datetime | None
    store: str = ""  # the tracking store the version came from (see ModelVersion.store)

    @property
    def ref(self) -> str:
        """The first tag, else the id: what `docker run` is given."""
        return self.tags[0] if self.tags else self.id


@dataclass(frozen=True)
class Deployment:
    """A deployment: which model version its router sends traffic to, and where it answers."""

    name: str
    model: str
    version: int | None
    alias: str
    run_id: str
    image: str
    container_id: str  # the model container the router sends traffic to now
    state: str  # Docker's state: running, exited, restarting, ...
    health: str  # healthy, unhealthy, starting, or none (no healthcheck)
    host: str
    port: int | None
    started_at: datetime | None
    follow_alias: bool = False
    store: str = ""  # the tracking store its version came from
    # The engine's host as this one reaches it, when the engine runs on another host (its
    # router then listens there, on ``host``: 0.0.0.0 or one of that host's addresses).
    engine_host: str = ""

    @property
    def address(self) -> str:
        """Where this host reaches the router: an all-addresses bind (0.0.0.0, ::, "") at the
        engine's host (on this host's engine, loopback); one address at that address."""
        if self.host in ALL_ADDRESSES:
            return self.engine_host or "127.0.0.1"
        return self.host.strip("[]")

    @property
    def url(self) -> str | None:
        """Base URL of the deployment's router, when it has a port."""
        if not self.port:
            return None
        host = self.address
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"


@dataclass(frozen=True)
class BuildOutcome:
    """An image built for one version; ``cached``: it is the very image that was there before."""

    image: ServingImage
    version: ModelVersion
    cached: bool


@dataclass(frozen=True)
class DeployPlan:
    """What a deploy will do, decided before anything changes (a confirmation shows it)."""

    reference: str  # as the operator wrote it
    version: ModelVersion  # what the reference names now
    alias: str  # the alias it was resolved through ("" for NAME/VERSION)
    name: str
    host: str
    port: int
    follow_alias: bool
    current: Deployment | None  # what serves under this name now; None: a new deployment
    image: ServingImage | None  # None: no image of that version yet, it is built first
    engine: str = "docker"  # where it runs: "docker" (containers) or "swarm" (services)
    image_registry: str = ""  # a swarm's: the image is pushed there first, run by digest

    @property
    def replaces(self) -> int | None:
        """The version served now under this name (None for a new deployment)."""
        return self.current.version if self.current is not None else None


@dataclass(frozen=True)
class DeployOutcome:
    """A deploy that happened: what serves now, what it replaced, and whether it built."""

    deployment: Deployment
    replaced: int | None
    image: ServingImage
    built: bool
    warning: str = ""  # the switch worked; its history entry or the targets file did not


@dataclass(frozen=True)
class RollbackPlan:
    """What a deployment rollback will do, decided before anything changes.

    A container switch goes from ``current`` (what serves now) back to ``to_version``; for a
    deployment that follows an alias, the alias moves back instead, from ``seen``.
    """

    name: str
    model: str
    from_version: int | None  # what serves now (for an alias follower: what the alias names)
    to_version: int
    current: Deployment
    alias: str = ""  # the followed alias that moves back; empty: a container switch
    seen: AliasState | None = None  # the alias as it was read (alias followers only)
    image_missing: bool = False  # the older version's image must be built first

    @property
    def via_alias(self) -> bool:
        return bool(self.alias)


@dataclass(frozen=True)
class RollbackOutcome:
    """A deployment rollback: a container switch (``deployment``) or, for a deployment that
    follows an alias, an alias move (``alias_event``; None when the alias was already there)."""

    name: str
    model: str
    from_version: int | None
    to_version: int | None
    deployment: Deployment | None = None
    alias: str = ""
    alias_event: AliasEvent | None = None
    warning: str = ""

    @property
    def via_alias(self) -> bool:
        return bool(self.alias)


@dataclass(frozen=True)
class TakeDownPlan:
    """Taking a deployment down, as shown: what it serves now and the containers that go."""

    name: str
    current: Deployment
    containers: tuple[str, ...]  # or, on a swarm, its services
    engine: str = "docker"


@dataclass(frozen=True)
class TakeDownOutcome:
    """A deployment that was taken down: the containers removed."""

    name: str
    removed: tuple[str, ...]
    warning: str = ""


@dataclass(frozen=True)
class CanaryCheck:
    """One check of a canary release at its last evaluation: ``verdict`` is ``pass``,
    ``fail`` or ``inconclusive``, empty before the first evaluation; ``figures`` is the line
    that decided it (``p99 0.081 s < 0.25 s``), empty before the first evaluation."""

    check: str  # as shown: ``p99 < 0.25 s``
    verdict: str = ""
    figures: str = ""

    @property
    def mark(self) -> str:
        """✓ passed, ✗ failed, ? inconclusive, · not evaluated yet."""
        return {"pass": "✓", "fail": "✗", "inconclusive": "?"}.get(self.verdict, "·")


@dataclass(frozen=True)
class CanaryRelease:
    """A canary release of a deployment as its file holds it now (the analysis runs in a
    worker process of its own; this is a reading of its state)."""

    deployment: str
    model: str
    stable_version: int | None
    canary_version: int
    status: str  # running, paused (waiting for a person), aborted, promoted
    weight: float  # percent of the traffic to the canary
    step: int  # 1-based, of ``len(steps)``
    steps: tuple[float, ...]
    failures: int
    failure_limit: int
    interval: float  # seconds between evaluations
    checks: tuple[CanaryCheck, ...]
    next_evaluation: datetime | None  # None while paused or finished
    updated: datetime
    last: str = ""  # the latest decision's line
    problem: str = ""  # why the last attempt to act failed, else ""
    worker_running: bool = False
    pending: str = ""  # a person's request the worker has not carried out yet
    alias: str = ""  # the alias the deployment was deployed through
    follow_alias: bool = False  # promotion moves the alias (the deployment follows it)
    # The last evaluation's figures, ``{"canary": {...}, "stable": {...}}`` (metric → value;
    # empty before the first evaluation)
    figures: dict[str, dict[str, float | None]] | None = None
    figures_source: str = "the direct scrape"  # or "Prometheus URL"

    @property
    def finished(self) -> bool:
        """Aborted or promoted: nothing more to decide."""
        return self.status in ("aborted", "promoted")
