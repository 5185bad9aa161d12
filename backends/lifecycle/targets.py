"""Keeping Prometheus' file_sd targets in step with the deployments on the engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backends.docker import engine
from backends.docker.containers import canary_targets, list_deployments
from backends.errors import BackendError
from backends.prometheus.discovery import refresh_targets
from backends.records import Deployment, TargetsFile

__all__ = ["refresh_from_engine", "refresh_from_host", "refresh_quietly", "running_deployments"]


def running_deployments(docker_host: str | None = None) -> list[Deployment]:
    """The labelled deployments on the Docker engine (Unavailable, exit 3, when it is down)."""
    client = engine.connect(docker_host)
    try:
        return list(list_deployments(client))
    finally:
        client.close()


def refresh_from_engine(docker: Any, path: Path | None = None) -> TargetsFile:
    """Make the targets file list exactly the deployments running on the engine now, and the
    canary containers beside them (a canary release's analysis reads their own series)."""
    return refresh_targets(list_deployments(docker), path, canary_targets(docker))


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
