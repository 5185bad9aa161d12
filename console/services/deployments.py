"""Images and deployments on the session's Docker engine, through the lifecycle's plans."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from console.capabilities import LogLine
from console.services.session import Session

if TYPE_CHECKING:
    from backends.records import (
        BuildOutcome,
        Deployment,
        DeployOutcome,
        DeployPlan,
        RollbackOutcome,
        RollbackPlan,
        TakeDownOutcome,
        TakeDownPlan,
    )

REASON = "console"  # what the history says about a change made here


class DockerDeployments:
    """The deployments capability: the very operations of `mlops image build` and `mlops
    deploy up/rollback/down` (backends.lifecycle), each planned, shown, then applied."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def list_deployments(self) -> list[Deployment]:
        from backends.lifecycle import placement

        return placement.list_deployments(self.session.handles())

    def deployment_logs(self, name: str, tail: int) -> Iterator[str]:
        from backends.docker import containers, swarm

        h = self.session.handles()
        read = swarm.deployment_logs if h.engine == "swarm" else containers.deployment_logs
        return read(h.docker(), name, follow=True, tail=tail)

    def build_image(self, reference: str, on_log: LogLine) -> BuildOutcome:
        from backends.lifecycle import build

        with self.session.for_change() as h:
            return build.build(h, reference, on_log=on_log)

    def plan_deploy(
        self, reference: str, name: str | None, port: int, host: str, follow_alias: bool
    ) -> DeployPlan:
        from backends.lifecycle import deploy

        return deploy.plan_deploy(
            self.session.handles(),
            reference,
            name=name,
            port=port,
            host=host,
            follow_alias=follow_alias,
        )

    def deploy(self, plan: DeployPlan, on_log: LogLine) -> DeployOutcome:
        from backends.lifecycle import deploy

        with self.session.for_change() as h:
            return deploy.apply_deploy(h, plan, reason=REASON, on_log=on_log)

    def plan_rollback(self, name: str) -> RollbackPlan:
        from backends.lifecycle import rollback

        return rollback.plan_rollback(self.session.handles(), name)

    def rollback(self, plan: RollbackPlan, on_log: LogLine) -> RollbackOutcome:
        from backends.lifecycle import rollback

        with self.session.for_change() as h:
            return rollback.apply_rollback(h, plan, reason=REASON, on_log=on_log)

    def plan_take_down(self, name: str) -> TakeDownPlan:
        from backends.lifecycle import deploy

        return deploy.plan_take_down(self.session.handles(), name)

    def take_down(self, plan: TakeDownPlan) -> TakeDownOutcome:
        from backends.lifecycle import deploy

        with self.session.for_change() as h:
            return deploy.apply_take_down(h, plan)
