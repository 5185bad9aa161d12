"""Keeping Prometheus' file_sd targets in step with the deployments on the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.docker import containers, engine, swarm
from backends.errors import BackendError
from backends.lifecycle.placement import engine_of
from backends.prometheus.discovery import refresh_targets
from backends.records import Deployment, ScrapeTarget, TargetsFile

__all__ = ["refresh_from_engine", "refresh_from_host", "refresh_quietly", "running_deployments"]


def running_deployments(docker_host: str | None = None) -> list[Deployment]:
    """The labelled deployments on the Docker engine, or the swarm (Unavailable, exit 3, when
    it is down)."""
    client = engine.connect(docker_host)
    try:
        return _on_engine(client)[0]
    finally:
        client.close()


def refresh_from_engine(docker: Any, path: Path | None = None) -> TargetsFile:
    """Make the targets file list exactly the deployments running on the engine now, and the
    canary containers beside them (a canary release's analysis reads their own series). On a
    swarm, each deployment's router: its /metrics holds every task's (server.metrics_merge),
    and its /-/router/canary/metrics a canary service's."""
    deployments, canaries = _on_engine(docker)
    return refresh_targets(deployments, path, canaries)


def _on_engine(docker: Any) -> tuple[list[Deployment], list[ScrapeTarget]]:
    """The deployments of the context's engine kind, and the canaries beside them."""
    if engine_of() == "swarm":
        return list(swarm.list_deployments(docker)), swarm.canary_targets(docker)
    return list(containers.list_deployments(docker)), containers.canary_targets(docker)


def refresh_from_host(docker_host: str | None = None, path: Path | None = None) -> TargetsFile:
    """``refresh_from_engine`` on the engine at ``docker_host`` (Unavailable when it is down)."""
    client = engine.connect(docker_host)
    try:
        return refresh_from_engine(client, path)
    finally:
        client.close()


def refresh_quietly(docker: Any) -> str:
    """Refresh after a change; a failure is a warning for the operator, never a failed change."""
    try:
        refresh_from_engine(docker)
    except (OSError, BackendError) as exc:
        return f"could not update the Prometheus targets file: {exc}"
    return ""
