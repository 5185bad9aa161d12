"""The real backends of one console session, one small class per capability.

``Services`` bundles them (``Services.real(settings)``) and is what the app holds; a screen
takes the one capability it uses (console.capabilities). Everything here imports mlflow,
docker and the metrics clients lazily, inside the calls (mlflow alone takes ~2 s to import),
so the first paint never waits for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from console.capabilities import (
        Alerts,
        Canaries,
        Deployments,
        Monitoring,
        Probes,
        Registry,
        Runs,
    )
    from console.config import Settings

__all__ = ["Services"]


@dataclass(frozen=True)
class Services:
    """The capabilities the screens use, one object each."""

    probes: Probes
    runs: Runs
    registry: Registry
    deployments: Deployments
    monitoring: Monitoring
    alerts: Alerts
    canaries: Canaries

    @classmethod
    def real(cls, settings: Settings) -> Services:
        """The real MLflow, Docker and metrics backends named by ``settings``."""
        from console.services.alerts import AlertingAlerts
        from console.services.canaries import LocalCanaries
        from console.services.deployments import DockerDeployments
        from console.services.monitoring import MetricsMonitoring
        from console.services.probes import BackendProbes
        from console.services.registry import MlflowRegistry
        from console.services.runs import MlflowRuns
        from console.services.session import Session

        session = Session(settings)
        return cls(
            probes=BackendProbes(session),
            runs=MlflowRuns(session),
            registry=MlflowRegistry(session),
            deployments=DockerDeployments(session),
            monitoring=MetricsMonitoring(session),
            alerts=AlertingAlerts(session),
            canaries=LocalCanaries(session),
        )
