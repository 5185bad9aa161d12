"""Registered models, versions and alias moves against the session's registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

from console.services.session import Session

if TYPE_CHECKING:
    from backends.records import (
        AliasEvent,
        AliasRollbackPlan,
        ApprovePlan,
        GateResult,
        ModelVersion,
        PendingApproval,
        PromotePlan,
        RegisteredModel,
    )

REASON = "console"  # what the history says about a move made here


class MlflowRegistry:
    """The registry capability: reads, and alias moves as plan → apply."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def list_models(self) -> list[RegisteredModel]:
        return self.session.handles().registry().list_models()

    def versions(self, model: str) -> list[ModelVersion]:
        return self.session.handles().registry().versions(model)

    def history(self, model: str) -> list[AliasEvent]:
        return self.session.handles().registry().history(model)

    def plan_promote(self, model: str, version: int, alias: str) -> PromotePlan:
        return self.session.handles().registry().plan_promote(model, version, alias=alias)

    def validate(self, model: str, version: int, alias: str) -> GateResult:
        return self.session.handles().registry().validate(model, version, alias=alias)

    def promote(self, plan: PromotePlan) -> tuple[GateResult, AliasEvent | None]:
        return self.session.handles().registry().apply_promote(plan, reason=REASON)

    def plan_rollback(self, model: str, alias: str) -> AliasRollbackPlan:
        return self.session.handles().registry().plan_rollback(model, alias=alias)

    def rollback(self, plan: AliasRollbackPlan) -> AliasEvent | None:
        return self.session.handles().registry().apply_rollback(plan, reason=REASON)

    def pending_approvals(self) -> list[PendingApproval]:
        return self.session.handles().registry().pending_approvals()

    def plan_approve(self, model: str, version: int) -> ApprovePlan:
        return self.session.handles().registry().plan_approve(model, version)

    def approve(self, plan: ApprovePlan) -> tuple[GateResult, AliasEvent]:
        return (
            self.session.handles().registry().apply_approve(plan, reason="approved in the console")
        )
