"""Where the console finds its backends: resolved once from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from backends.defaults import DEFAULT_TRACKING_URI

DEFAULT_PROJECT = Path("examples") / "iris"


def default_project() -> Path:
    """``examples/iris`` in the working directory, else the one shipped with mlops (the
    checkout's, or the installed wheel's copy)."""
    if (DEFAULT_PROJECT / "MLproject").is_file():
        return DEFAULT_PROJECT
    from backends import shipped

    return shipped.path(DEFAULT_PROJECT.as_posix())


@dataclass(frozen=True)
class Settings:
    """The backends one console session talks to, and how it presents itself."""

    tracking_uri: str
    docker_host: str | None
    prometheus_url: str | None
    context: str
    read_only: bool = False
    theme: str | None = None  # a Textual theme name; None keeps Textual's default
    alertmanager_url: str | None = None  # None: Prometheus' own alerts, read-only
    # Model servers outside Docker to watch too (a local `mlops serve`, the quickstart's): the
    # direct scrape reads them beside the engine's deployments.
    monitor_targets: tuple[str, ...] = ()

    @classmethod
    def load(
        cls, *, context: str | None = None, read_only: bool = False, theme: str | None = None
    ) -> Settings:
        """Put the context (``context``, $MLOPS_CONTEXT, the config file's current one, else
        ``local``) into the environment, then read it (console.contexts)."""
        from console.contexts import activate

        activate(context)
        return cls.from_env(read_only=read_only, theme=theme)

    @classmethod
    def from_env(
        cls, *, context: str | None = None, read_only: bool = False, theme: str | None = None
    ) -> Settings:
        """Read MLFLOW_TRACKING_URI, DOCKER_HOST, PROMETHEUS_URL, ALERTMANAGER_URL,
        MLOPS_MONITOR_TARGETS, MLOPS_CONTEXT, MLOPS_READ_ONLY, MLOPS_THEME."""
        env = os.environ
        targets = env.get("MLOPS_MONITOR_TARGETS", "")
        return cls(
            tracking_uri=env.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI,
            docker_host=env.get("DOCKER_HOST") or None,
            prometheus_url=env.get("PROMETHEUS_URL") or None,
            context=context or env.get("MLOPS_CONTEXT") or "local",
            read_only=read_only or env.get("MLOPS_READ_ONLY", "").lower() in ("1", "true", "yes"),
            theme=theme or env.get("MLOPS_THEME") or None,
            alertmanager_url=env.get("ALERTMANAGER_URL") or None,
            monitor_targets=tuple(t.strip() for t in targets.split(",") if t.strip()),
        )

    @property
    def metrics_source(self) -> str:
        """Which metrics source is in use: a Prometheus server, or direct scrapes."""
        return f"prometheus {self.prometheus_url}" if self.prometheus_url else "direct scrape"
