"""One handle per system for one operation: the registry's MLflow client and a Docker client.

Every hop of an operation (plan, apply, its history entry, the targets refresh) uses the same
two handles, made once, when first needed: no new MLflow client and ``/health`` probe per hop.
"""

from __future__ import annotations

import threading
from typing import Any

from backends.docker import engine
from backends.mlflow.registry import Registry

__all__ = ["Handles"]


def _engine_from_environment() -> str:
    from backends.lifecycle.placement import engine_of

    return engine_of()


class Handles:
    """The systems one operation talks to. Thread-safe: the console's workers share one."""

    def __init__(
        self,
        tracking_uri: str,
        docker_host: str | None = None,
        *,
        docker_timeout: float = 60.0,
        registry: Registry | None = None,
        docker: Any = None,
        engine: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        # Where deployments live (backends.lifecycle.placement): the context's engine.
        self.engine = engine or _engine_from_environment()
        self.docker_host = docker_host
        self.docker_timeout = docker_timeout
        self._registry = registry
        self._docker = docker
        self._owns_docker = docker is None
        self._lock = threading.Lock()

    def registry(self) -> Registry:
        """The registry (its MLflow client is the operation's one MLflow handle)."""
        with self._lock:
            if self._registry is None:
                self._registry = Registry(self.tracking_uri)
            return self._registry

    @property
    def has_registry(self) -> bool:
        """Whether the registry handle exists already (nothing is connected to ask)."""
        return self._registry is not None

    def mlflow(self) -> Any:
        """The operation's MLflow client."""
        return self.registry().client

    def docker(self) -> Any:
        """The operation's Docker client (Unavailable, exit 3, when the engine is down)."""
        with self._lock:
            if self._docker is None:
                self._docker = engine.connect(self.docker_host, timeout=self.docker_timeout)
            return self._docker

    def forget_docker(self) -> None:
        """Drop the Docker client (after the engine went away): the next use reconnects."""
        with self._lock:
            client, self._docker = self._docker, None
        if client is not None and self._owns_docker:
            client.close()

    def close(self) -> None:
        """Close what this object opened."""
        self.forget_docker()

    def __enter__(self) -> Handles:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
