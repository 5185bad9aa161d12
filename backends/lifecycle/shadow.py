"""Shadow traffic for a deployment: a candidate version beside the stable one gets a copy of a
share of the prediction requests through the router's mirror; its answers are compared with
the ones the clients got, then thrown away. Nothing a client sees changes.

The candidate runs as the deployment's canary container, or service on a swarm (``role``
canary: one candidate at a time, a canary release or a shadow). What it is worth is read from
the router's own figures (``server/mirror.py``): the share of rows it answers differently
(another class; for numbers the mean absolute difference), its latency, errors and dropped
copies. Promoting it switches it
in as any deploy; stopping it removes the mirror, then the container.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

from backends.errors import BackendError, Conflict, InvalidInput, NotFound
from backends.lifecycle import placement
from backends.lifecycle.build import image_for
from backends.lifecycle.canary import candidate, switch_in
from backends.lifecycle.deploy import changing, check_name
from backends.lifecycle.handles import Handles
from backends.prometheus.exposition import parse_exposition
from backends.prometheus.queries import bucket_quantile
from backends.records import Deployment, ModelVersion

__all__ = [
    "ShadowFigures",
    "plan_shadow",
    "promote_shadow",
    "shadow_figures",
    "start_shadow",
    "stop_shadow",
]

LogLine = Callable[[str], None]


@dataclass(frozen=True)
class ShadowPlan:
    deployment: Deployment
    version: ModelVersion
    percent: float
    reason: str


@dataclass(frozen=True)
class ShadowFigures:
    """The mirror as the router sees it now."""

    deployment: str
    version: str  # the candidate's
    percent: float
    disagreement_ratio: float | None  # over the window's rows; None before any
    mean_absolute_difference: float | None
    window_rows: int
    copies: int  # answers the candidate gave
    errors: int
    dropped: int
    p99: float | None  # the candidate's answer time, seconds


def plan_shadow(
    h: Handles, name: str, reference: str, percent: float, *, reason: str = ""
) -> ShadowPlan:
    """Refused before anything starts: a share outside (0, 100], no such deployment, the
    version it serves, another candidate (canary or shadow) already beside it."""
    check_name(name)
    if isinstance(percent, bool) or not (math.isfinite(percent) and 0 < percent <= 100):
        raise InvalidInput(f"--mirror takes a share of requests in (0, 100], not {percent:g}")
    deployment, version = candidate(h, name, reference, "shadow")
    if placement.canary_units(h, name):
        raise Conflict(
            f"deployment {name!r} has a candidate beside it already (a canary or a shadow): "
            f"`mlops deploy canary {name} --abort` removes it"
        )
    return ShadowPlan(deployment, version, percent, reason)


def start_shadow(h: Handles, planned: ShadowPlan, *, on_log: LogLine | None = None) -> None:
    """Start the candidate (one that never becomes ready is removed: nothing changed), then
    point the router's mirror at it, and write the history entry."""
    name = planned.deployment.name
    log = on_log or (lambda _line: None)
    image, _ = image_for(h, planned.version, log)
    with changing(h, name, image.ref, "shadow"):
        log(f"starting v{planned.version.version} as a shadow, waiting for /ready")
        unit = placement.start_canary(h, image, name, "", shadow=True)
        try:
            placement.router_api(h, name).set_mirror(
                unit.upstream, str(planned.version.version), planned.percent
            )
        except BaseException:
            placement.remove_canaries(h, name)
            raise
    _history(
        h,
        planned.deployment,
        planned.version.version,
        f"shadow v{planned.version.version} started: a copy of {planned.percent:g} % of the "
        "prediction requests, answers compared and discarded"
        + (f"; {planned.reason}" if planned.reason else ""),
    )


def shadow_figures(h: Handles, name: str) -> ShadowFigures | None:
    """The running shadow's figures (None when the deployment has no mirror)."""
    api = placement.router_api(h, name)
    mirror = api.state().get("mirror")
    if not mirror:
        return None
    metrics = parse_exposition(api.own_metrics())

    def one(metric: str) -> float | None:
        values = [v for _, v in metrics.values(metric)]
        return values[0] if values else None

    def total(metric: str, **wanted: str) -> int:
        return int(
            sum(
                v
                for labels, v in metrics.values(metric)
                if all(labels.get(k) == w for k, w in wanted.items())
            )
        )

    rows = int(one("mlops_mirror_window_rows") or 0)
    buckets = [
        (float(labels["le"]), v)
        for labels, v in metrics.values("mlops_mirror_duration_seconds_bucket")
        if "le" in labels
    ]
    return ShadowFigures(
        deployment=name,
        version=str(mirror.get("version", "")),
        percent=float(mirror.get("percent", 0)),
        disagreement_ratio=one("mlops_mirror_disagreement_ratio") if rows else None,
        mean_absolute_difference=one("mlops_mirror_mean_absolute_difference") if rows else None,
        window_rows=rows,
        copies=total("mlops_router_requests_total", role="mirror"),
        errors=total("mlops_mirror_errors_total"),
        dropped=total("mlops_mirror_dropped_total"),
        p99=bucket_quantile(0.99, sorted(buckets)) if buckets else None,
    )


def stop_shadow(h: Handles, name: str) -> bool:
    """The router's mirror goes (the copies stop); False when there was none. The candidate's
    container is the caller's to remove."""
    api = placement.router_api(h, name)
    had = api.state().get("mirror") is not None
    if had:
        api.remove_mirror()
    return had


def promote_shadow(h: Handles, name: str, reason: str = "") -> Deployment:
    """The shadow's version becomes the stable one, switched in as any deploy (0 failed
    requests); the mirror and the candidate then go."""
    candidates = placement.canary_units(h, name)
    figures = shadow_figures(h, name)
    if figures is None or not candidates:
        raise NotFound(f"deployment {name!r} has no shadow to promote")
    before = placement.get_deployment(h, name)
    version = h.registry().resolve(f"{before.model}/{figures.version}")
    if before.follow_alias:
        raise Conflict(
            f"deployment {name!r} follows {before.model}@{before.alias}: promote v{version.version}"
            f" to that alias (mlops models promote {before.model} {version.version}) and it "
            f"reloads; then stop the shadow (mlops deploy canary {name} --abort)"
        )
    deployment = switch_in(h, name, version, "shadow")
    stop_shadow(h, name)
    placement.remove_canaries(h, name)
    ratio = "n/a" if figures.disagreement_ratio is None else f"{figures.disagreement_ratio:.4f}"
    _history(
        h,
        before,
        version.version,
        f"shadow v{version.version} promoted after {figures.window_rows} compared rows "
        f"(disagreement {ratio}, {figures.errors} errors)" + (f"; {reason}" if reason else ""),
    )
    return deployment


def _history(h: Handles, deployment: Deployment, version: int, line: str) -> None:
    with contextlib.suppress(BackendError):  # the history is a record, never a reason to stop
        h.registry().record_deployment(
            deployment.model, deployment.name, "canary", deployment.version, version, line
        )
