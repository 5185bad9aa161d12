"""The model registry: list, register, promote through a gate, roll back, and alias history.

MLflow keeps only where an alias points *now*, so the history is kept beside it, in the
registered model's own tags: every operator sharing the server sees the same history (the
MLflow UI shows the tags too), and nothing else needs to be deployed.

* One tag per event: ``mlops.history.<alias>.<seq>.<token>`` → JSON (action, from, to, who,
  at, reason); the format and its rules are in ``backends.mlflow.history``, the claim protocol
  that writes them in ``backends.mlflow.alias_moves``.
* A manual move (the alias differs from its newest event and no claim is live) is shown as a
  ``manual`` event (who: unknown) by ``history`` and written down by the next move.
* Rollback replays the history as a stack: promote and manual moves push the version they
  replaced, a rollback pops back to its target, so two rollbacks go back two steps.

Every move is a plan first (``plan_promote``, ``plan_rollback``: what the operator is shown),
then applied as shown (``apply_promote``, ``apply_rollback``): if the alias moved in between,
Conflict names who moved it and nothing moves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from backends.defaults import CHALLENGER, CHAMPION
from backends.errors import Conflict, GateFailed, InvalidInput, NotFound
from backends.mlflow.alias_moves import ModelTags
from backends.mlflow.approvals import (
    REPORT_TAG,
    TRIGGER_TAG,
    decode_report,
    decode_trigger,
    encode_report,
    encode_trigger,
)
from backends.mlflow.client import connect, translate_errors
from backends.mlflow.gate import check_requirement, model_checks, parse_requirement
from backends.mlflow.history import (
    Ledger,
    check_alias,
    current_user,
    history_of,
    rollback_target,
    utc_now,
)
from backends.mlflow.models import resolve, store_id, version_record
from backends.mlflow.run_mapping import GIT_COMMIT_TAG, GIT_REPO_TAG, SOURCE_NAME_TAG
from backends.records import (
    AliasAction,
    AliasEvent,
    AliasHistory,
    AliasRollbackPlan,
    AliasState,
    ApprovePlan,
    GateReport,
    GateResult,
    ModelVersion,
    PendingApproval,
    PromotePlan,
    Provenance,
    RegisteredModel,
    RetrainTrigger,
)

__all__ = ["Registry", "current_user"]


class Registry:
    """The MLflow model registry at ``tracking_uri``, acting as ``user``: one MLflow client
    for every call it makes."""

    def __init__(self, tracking_uri: str, *, user: str | None = None, client: Any = None) -> None:
        self.uri = tracking_uri
        self.user = user or current_user()
        self.store = store_id(tracking_uri)
        self._client = client if client is not None else connect(tracking_uri)
        self._tags = ModelTags(self._client, tracking_uri, self.user)

    @property
    def client(self) -> Any:
        """The MLflow client this registry uses (for other reads of the same operation)."""
        return self._client

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        found = self._registered_models()
        return sorted((self._model_record(rm) for rm in found), key=lambda m: m.name)

    def _registered_models(self) -> list[Any]:
        """Every registered model as MLflow returns it, all pages."""
        found: list[Any] = []
        token = None
        with translate_errors(self.uri):
            while True:
                page = self._client.search_registered_models(max_results=500, page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    return found

    def get_model(self, name: str) -> RegisteredModel:
        """One registered model (NotFound if absent)."""
        with translate_errors(self.uri):
            return self._model_record(self._client.get_registered_model(name))

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of ``name``, newest first, with its source run's metrics."""
        with translate_errors(self.uri):
            aliases = self._client.get_registered_model(name).aliases
            found: list[Any] = []
            token = None
            while True:
                page = self._client.search_model_versions(
                    f"name = '{_quote(name)}'", max_results=1000, page_token=token
                )
                found.extend(page)
                token = page.token
                if not token:
                    break
        metrics = {run_id: self._run_metrics(run_id) for run_id in {mv.run_id for mv in found}}
        records = [
            version_record(mv, aliases, metrics.get(mv.run_id, {}), self.store) for mv in found
        ]
        return sorted(records, key=lambda v: v.version, reverse=True)

    def version(self, name: str, version: int) -> ModelVersion:
        """One version (NotFound if absent)."""
        with translate_errors(self.uri):
            mv = self._client.get_model_version(name, str(version))
            aliases = self._client.get_registered_model(name).aliases
        return version_record(mv, aliases, self._run_metrics(mv.run_id), self.store)

    def resolve(self, reference: str) -> ModelVersion:
        """The version ``reference`` (NAME@ALIAS, NAME/VERSION, models:/...) names now."""
        return resolve(self._client, self.uri, reference)

    def provenance(self, version: ModelVersion) -> Provenance:
        """Where ``version``'s code came from: its source run's git repository and commit (what
        an image's OCI ``source`` and ``revision`` labels mean). Empty for a version without a
        run, or whose run was deleted: the version is still served, its provenance unknown."""
        tags: dict[str, str] = {}
        if version.run_id:
            try:
                with translate_errors(self.uri):
                    tags = dict(self._client.get_run(version.run_id).data.tags)
            except NotFound:
                pass
        return Provenance(
            repo_url=tags.get(GIT_REPO_TAG) or None,
            commit=tags.get(GIT_COMMIT_TAG) or None,
            source=tags.get(SOURCE_NAME_TAG) or None,
        )

    def alias_state(self, name: str, alias: str = CHAMPION) -> AliasState:
        """Where ``alias`` points now and the newest event behind it: pass it back to moves."""
        return self._tags.ledger(name).state(check_alias(alias))

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of ``alias`` (or of every alias), oldest first, manual moves included."""
        return list(self.history_report(name, alias).events)

    def history_report(self, name: str, alias: str | None = None) -> AliasHistory:
        """The history and the entries under its prefix that could not be read (and why)."""
        ledger = self._tags.ledger(name)
        events = history_of(ledger, check_alias(alias) if alias else None)
        return AliasHistory(name, tuple(events), ledger.unreadable)

    # ------------------------------------------------------------------ registering, the gate

    def register(self, run_id: str, name: str, *, artifact: str | None = None) -> ModelVersion:
        """Register the model logged by ``run_id`` as a new version of ``name``."""
        with translate_errors(self.uri):
            run = self._client.get_run(run_id)
            logged = self._logged_models(run.info.experiment_id, run_id)
            if artifact is not None:
                logged = [m for m in logged if m.name == artifact]
            if not logged:
                named = f" named {artifact!r}" if artifact else ""
                raise NotFound(f"run {run_id} has no logged model{named}")
            if len(logged) > 1:
                names = ", ".join(sorted(m.name for m in logged))
                raise InvalidInput(f"run {run_id} logged several models ({names}): pick one")
            model = logged[0]
            try:
                self._client.create_registered_model(name)
            except Exception as exc:
                if getattr(exc, "error_code", "") not in (
                    "RESOURCE_ALREADY_EXISTS",
                    "ALREADY_EXISTS",
                ):
                    raise
            mv = self._client.create_model_version(
                name, source=model.model_uri, run_id=run_id, model_id=model.model_id
            )
        return version_record(mv, {}, self._run_metrics(run_id), self.store)

    def validate(
        self, name: str, version: int, *, alias: str = CHAMPION, requirements: Iterable[str] = ()
    ) -> GateResult:
        """Run the promotion gate for ``version`` against the holder of ``alias``; move nothing."""
        parsed = [parse_requirement(r) for r in requirements]
        check_alias(alias)
        with translate_errors(self.uri):
            mv = self._client.get_model_version(name, str(version))
            aliases = self._client.get_registered_model(name).aliases
        holder, champion = aliases.get(alias), aliases.get(CHAMPION)
        checks = [check_requirement(r, self._run_metrics(mv.run_id)) for r in parsed]
        found, policy = model_checks(
            self.uri,
            name,
            version,
            None if holder is None else int(holder),
            mv.run_id or None,
            champion=None if champion is None else int(champion),
        )
        checks += found
        passed = all(c.passed for c in checks)
        return GateResult(name, version, alias, tuple(checks), passed, policy)

    # ------------------------------------------------------------------ promote

    def plan_promote(
        self, name: str, version: int, *, alias: str = CHAMPION, requirements: Iterable[str] = ()
    ) -> PromotePlan:
        """What promoting ``version`` to ``alias`` will move: the alias as it is now."""
        wanted = tuple(requirements)
        for text in wanted:
            parse_requirement(text)  # a bad requirement is a usage error before anything
        with translate_errors(self.uri):
            self._client.get_model_version(name, str(version))  # NotFound now, not at apply
        return PromotePlan(name, version, alias, self.alias_state(name, alias), wanted)

    def apply_promote(
        self,
        plan: PromotePlan,
        *,
        reason: str = "",
        report: Callable[[GateResult], None] | None = None,
    ) -> tuple[GateResult, AliasEvent | None]:
        """Gate the plan's version, then move the alias from where the plan saw it.

        GateFailed moves nothing; Conflict when the alias moved since the plan (it names who).
        ``report`` sees the gate before anything moves. The event is None when the alias
        already pointed at the version.
        """
        gate = self.validate(
            plan.model, plan.version, alias=plan.alias, requirements=plan.requirements
        )
        if report is not None:
            report(gate)
        _raise_if_failed(gate)
        if not plan.moves:
            self._tags.raise_if_stale(plan.seen, self._tags.ledger(plan.model))
            return gate, None
        return gate, self._tags.move(plan.seen, plan.version, "promote", reason)

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = CHAMPION,
        requirements: Iterable[str] = (),
        reason: str = "",
        seen: AliasState | None = None,
        report: Callable[[GateResult], None] | None = None,
    ) -> tuple[GateResult, AliasEvent | None]:
        """Plan and apply in one call, from ``seen`` (the caller's view) when given."""
        plan = self.plan_promote(name, version, alias=alias, requirements=requirements)
        if seen is not None:
            plan = PromotePlan(name, version, alias, seen, plan.requirements)
        return self.apply_promote(plan, reason=reason, report=report)

    # ------------------------------------------------------------------ roll back

    def plan_rollback(
        self, name: str, *, alias: str = CHAMPION, to: int | None = None
    ) -> AliasRollbackPlan:
        """Where rolling ``alias`` back goes: the version it held before the current one
        (replaying the history as a stack), or ``to``. GateFailed when there is none."""
        ledger = self._tags.ledger(name)
        seen = ledger.state(check_alias(alias))
        if seen.version is None:
            raise GateFailed(
                f"{alias} of {name} is not set: nothing to roll back",
                title="Nothing to roll back to",
            )
        target = to
        if target is None:
            events = ledger.events_of(alias)
            manual = ledger.manual_move(alias, utc_now())
            target = rollback_target(events + ([manual] if manual else []), seen.version)
            if target is None:
                raise GateFailed(
                    f"{alias} of {name} has no earlier version to roll back to "
                    f"(it is at version {seen.version}; see `mlops models history {name}`)",
                    title="Nothing to roll back to",
                )
        elif target != seen.version:
            with translate_errors(self.uri):
                self._client.get_model_version(name, str(target))
        return AliasRollbackPlan(name, alias, seen, target)

    def apply_rollback(self, plan: AliasRollbackPlan, *, reason: str = "") -> AliasEvent | None:
        """Move the alias back as planned; Conflict when it moved since. None when the plan
        moves nothing (the alias already pointed at ``to``)."""
        ledger = self._tags.ledger(plan.model)
        self._tags.raise_if_stale(plan.seen, ledger)
        if not plan.moves:
            return None
        return self._tags.move(plan.seen, plan.to_version, "rollback", reason)

    def rollback(
        self,
        name: str,
        *,
        alias: str = CHAMPION,
        to: int | None = None,
        reason: str = "",
        seen: AliasState | None = None,
    ) -> AliasEvent | None:
        """Plan and apply in one call (from ``seen``, the caller's view, when given)."""
        if seen is not None:
            self._tags.raise_if_stale(seen, self._tags.ledger(name))
        return self.apply_rollback(self.plan_rollback(name, alias=alias, to=to), reason=reason)

    # ------------------------------------------------------------------ approvals

    def record_trigger(self, name: str, version: int, trigger: RetrainTrigger) -> None:
        """What started a retraining, on its version: written before the challenger alias
        moves, so a challenger that waits for a person always says why it exists."""
        with translate_errors(self.uri):
            self._client.set_model_version_tag(
                name, str(version), TRIGGER_TAG, encode_trigger(trigger)
            )

    def record_gate(
        self, name: str, version: int, report: GateReport, trigger: RetrainTrigger | None
    ) -> None:
        """Keep the retraining's gate report and trigger on the version, for its approver
        (the report on the candidate's run too, where MLflow's UI shows it by its metrics)."""
        text = encode_report(report)
        with translate_errors(self.uri):
            self._client.set_model_version_tag(name, str(version), REPORT_TAG, text)
            run_id = self._client.get_model_version(name, str(version)).run_id
            if run_id:
                self._client.set_tag(run_id, REPORT_TAG, text)
            if trigger is not None:
                self._client.set_model_version_tag(
                    name, str(version), TRIGGER_TAG, encode_trigger(trigger)
                )

    def pending_approvals(self, name: str | None = None) -> list[PendingApproval]:
        """Challengers that wait for a person: ``challenger`` set and not the champion."""
        if name is not None:
            with translate_errors(self.uri):
                models = [self._client.get_registered_model(name)]
        else:
            models = self._registered_models()
        found = []
        for rm in models:
            aliases = dict(rm.aliases)
            waiting = aliases.get(CHALLENGER)
            if waiting is None or waiting == aliases.get(CHAMPION):
                continue
            found.append(self._pending(rm.name, int(waiting), aliases))
        return sorted(found, key=lambda p: (p.created, p.model), reverse=True)

    def plan_approve(self, name: str, version: int) -> ApprovePlan:
        """What approving ``version`` moves: champion, from where it is now, to the challenger.
        Conflict when ``version`` is not the challenger waiting (approve what was gated)."""
        ledger = self._tags.ledger(name)
        challenger = ledger.state(CHALLENGER)
        if challenger.version != version:
            waiting = (
                f"v{challenger.version} is" if challenger.version is not None else "no version is"
            )
            raise Conflict(
                f"{name} v{version} is not the challenger waiting for approval ({waiting}); "
                "nothing moved",
                title="Not waiting for approval",
            )
        champion = ledger.state(CHAMPION)
        if champion.version == version:
            raise Conflict(f"{name} v{version} is champion already; nothing moved")
        pending = self._pending(name, version, dict(ledger.aliases))
        return ApprovePlan(name, version, champion, challenger, pending)

    def apply_approve(
        self,
        plan: ApprovePlan,
        *,
        reason: str = "",
        report: Callable[[GateResult], None] | None = None,
    ) -> tuple[GateResult, AliasEvent]:
        """Make the plan's challenger champion, through the gate, as this registry's user (the
        approver, written into the history). Conflict when either alias moved since the plan."""
        ledger = self._tags.ledger(plan.model)
        self._tags.raise_if_stale(plan.challenger, ledger)
        gate = self.validate(plan.model, plan.version, alias=CHAMPION)
        if report is not None:
            report(gate)
        _raise_if_failed(gate)
        event = self._tags.move(plan.seen, plan.version, "approve", approval_reason(plan, reason))
        return gate, event

    def approve(
        self, name: str, version: int, *, reason: str = ""
    ) -> tuple[GateResult, AliasEvent]:
        """Plan and apply an approval in one call."""
        return self.apply_approve(self.plan_approve(name, version), reason=reason)

    def record_outside_move(self, name: str, alias: str, note: str) -> AliasEvent | None:
        """Write down a move of ``alias`` made outside mlops (the registry's webhook saw it):
        the manual event, or None when there is nothing to write (our own move, or one
        already recorded)."""
        return self._tags.record_outside_move(name, check_alias(alias), note)

    def _pending(self, name: str, version: int, aliases: dict[str, Any]) -> PendingApproval:
        with translate_errors(self.uri):
            mv = self._client.get_model_version(name, str(version))
        tags = dict(mv.tags or {})
        champion = aliases.get(CHAMPION)
        return PendingApproval(
            model=name,
            version=version,
            champion_version=None if champion is None else int(champion),
            created=_ms(mv.creation_timestamp),
            run_id=mv.run_id,
            report=decode_report(tags.get(REPORT_TAG)),
            trigger=decode_trigger(tags.get(TRIGGER_TAG)),
        )

    def record_deployment(
        self,
        name: str,
        deployment: str,
        action: AliasAction,
        from_version: int | None,
        to_version: int | None,
        reason: str = "",
    ) -> AliasEvent:
        """Write a container deploy/rollback into the model's history (stream deploy/NAME)."""
        return self._tags.record_deployment(
            name, deployment, action, from_version, to_version, reason
        )

    # ------------------------------------------------------------------ helpers

    def _model_record(self, rm: Any) -> RegisteredModel:
        ledger = Ledger.parse(rm.name, dict(rm.aliases), dict(rm.tags))
        latest = [int(mv.version) for mv in rm.latest_versions or []]
        return RegisteredModel(
            name=rm.name,
            description=rm.description or "",
            aliases=ledger.aliases,
            tags=ledger.user_tags,
            latest_version=max(latest, default=None),
            created=_ms(rm.creation_timestamp),
            updated=_ms(rm.last_updated_timestamp),
        )

    def _run_metrics(self, run_id: str | None) -> dict[str, float]:
        if not run_id:
            return {}
        try:
            with translate_errors(self.uri):
                return dict(self._client.get_run(run_id).data.metrics)
        except NotFound:
            return {}  # the source run was deleted; the version still exists

    def _logged_models(self, experiment_id: str, run_id: str) -> list[Any]:
        found: list[Any] = []
        token = None
        while True:
            page = self._client.search_logged_models(
                experiment_ids=[experiment_id],
                filter_string=f"source_run_id = '{_quote(run_id)}'",
                page_token=token,
            )
            found.extend(m for m in page if m.source_run_id == run_id)
            token = page.token
            if not token:
                return found


def _raise_if_failed(gate: GateResult) -> None:
    """GateFailed naming every failed check, when the gate did not pass; nothing moved."""
    if not gate.passed:
        failed = "; ".join(f"{c.name}: {c.detail}" for c in gate.checks if not c.passed)
        raise GateFailed(
            f"version {gate.version} of {gate.model} did not pass: {failed}; nothing moved"
        )


def approval_reason(plan: ApprovePlan, reason: str) -> str:
    """The history's reason of an approval: what the approver saw (trigger, gate report)."""
    pending = plan.pending
    parts = [reason or "approved"]
    if pending.trigger is not None:
        parts.append(f"trigger: {pending.trigger.summary()}")
    if pending.report is not None:
        checks = pending.report.checks
        passed = sum(c.passed for c in checks)
        parts.append(
            f"gate report: {pending.report.comparison}; {passed}/{len(checks)} checks passed"
        )
    else:
        parts.append("no gate report on the version (moved to challenger by hand)")
    return "; ".join(parts)


def _ms(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
