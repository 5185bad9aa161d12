"""Container deploys and rollbacks, written into the registry's alias history (same place)."""

from __future__ import annotations

from backends.records import AliasAction, AliasEvent, Deployment
from backends.registry import Registry


def record(
    tracking_uri: str,
    deployment: Deployment,
    action: AliasAction,
    replaced: str | None,
    reason: str = "",
) -> AliasEvent:
    """Record that ``deployment`` now serves its version (and which one it replaced)."""
    return Registry(tracking_uri).record_deployment(
        deployment.model,
        deployment.name,
        action,
        int(replaced) if replaced and replaced.isdigit() else None,
        int(deployment.version) if deployment.version.isdigit() else None,
        reason,
    )
