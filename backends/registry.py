"""The model registry: list, register, promote through a gate, roll back, and alias history.

MLflow keeps only where an alias points *now*, so the history is kept beside it, in the
registered model's own tags: every operator sharing the server sees the same history (the
MLflow UI shows the tags too), and nothing else needs to be deployed.

* One tag per event: ``mlops.history.<alias>.<seq>.<token>`` → JSON (action, from, to, who,
  at, reason). ``seq`` (eight digits, per alias) orders the events; the random ``token`` makes
  every key unique, so no writer can ever overwrite another writer's event.
* MLflow has no compare-and-set, so a move first takes a claim on the alias ("write, then
  read", as in Lamport's fast mutual exclusion): (1) write ``mlops.claim.<alias>.<token>``;
  (2) read all tags in one request; if another live claim is there, withdraw and retry after
  a random back-off while the alias is unchanged; if the alias or its newest event differs
  from what the caller saw, withdraw and raise Conflict naming who moved it; (3) otherwise
  set the alias, write the event (seq = newest + 1), and delete the claim.
  Of two writers that both write before they read, both see each other and back off; one that
  reads after the holder finished sees the holder's event and stops as stale. So moves are
  serialised: each event's ``from`` is the previous ``to``, and the alias ends at the newest
  event's version. A claim older than ``CLAIM_TTL`` (a crashed process) is ignored and later
  removed; a writer paused longer than that between claim and commit (or clocks skewed by more)
  could break the exclusion.
* A manual move (the alias differs from its newest event and no claim is live) is shown as a
  ``manual`` event (who: unknown) by ``history`` and written down by the next move.
* Rollback replays the history as a stack: promote and manual moves push the version they
  replaced, a rollback pops back to its target, so two rollbacks go back two steps.
"""

from __future__ import annotations

import random
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from backends.errors import Conflict, GateFailed, InvalidInput, NotFound
from backends.mlflow_client import connect, translate_errors, using_tracking_uri
from backends.records import (
    AliasAction,
    AliasEvent,
    AliasState,
    GateCheck,
    GateResult,
    ModelVersion,
    RegisteredModel,
)
from backends.registry_gate import (
    check_requirement,
    compare_inputs,
    inputs_of,
    parse_requirement,
    predict_check,
)
from backends.registry_history import (
    CLAIM_TTL,
    DEPLOY_STREAM,
    MAX_REASON,
    Ledger,
    check_alias,
    current_user,
    encode_claim,
    encode_event,
    history_of,
    new_token,
    rollback_target,
    stale_message,
    utc_now,
)

__all__ = ["Registry", "current_user"]

CLAIM_PATIENCE = 20.0  # seconds to keep retrying while another operator holds the alias


def _ms_to_datetime(ms: int | None) -> datetime:
    return datetime.fromtimestamp((ms or 0) / 1000, tz=UTC)


class Registry:
    """The MLflow model registry at ``tracking_uri``, acting as ``user``."""

    def __init__(self, tracking_uri: str, *, user: str | None = None, client: Any = None) -> None:
        self.uri = tracking_uri
        self.user = user or current_user()
        self._client = client if client is not None else connect(tracking_uri)

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        found: list[Any] = []
        token = None
        with translate_errors(self.uri):
            while True:
                page = self._client.search_registered_models(max_results=500, page_token=token)
                found.extend(page)
                token = page.token
                if not token:
                    break
        return sorted((self._model_record(rm) for rm in found), key=lambda m: m.name)

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
        records = [self._version_record(mv, aliases, metrics.get(mv.run_id, {})) for mv in found]
        return sorted(records, key=lambda v: v.version, reverse=True)

    def version(self, name: str, version: int) -> ModelVersion:
        """One version (NotFound if absent)."""
        with translate_errors(self.uri):
            mv = self._client.get_model_version(name, str(version))
            aliases = self._client.get_registered_model(name).aliases
        return self._version_record(mv, aliases, self._run_metrics(mv.run_id))

    def alias_state(self, name: str, alias: str = "champion") -> AliasState:
        """Where ``alias`` points now and the newest event behind it: pass it back to moves."""
        return self._ledger(name).state(check_alias(alias))

    def history(self, name: str, alias: str | None = None) -> list[AliasEvent]:
        """Every move of ``alias`` (or of every alias), oldest first, manual moves included."""
        return history_of(self._ledger(name), check_alias(alias) if alias else None)

    # ------------------------------------------------------------------ changing

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
        return self._version_record(mv, {}, self._run_metrics(run_id))

    def validate(
        self, name: str, version: int, *, alias: str = "champion", requirements: Iterable[str] = ()
    ) -> GateResult:
        """Run the promotion gate for ``version`` against the holder of ``alias``; move nothing."""
        parsed = [parse_requirement(r) for r in requirements]
        check_alias(alias)
        with translate_errors(self.uri):
            mv = self._client.get_model_version(name, str(version))
            holder = self._client.get_registered_model(name).aliases.get(alias)
        checks = [check_requirement(r, self._run_metrics(mv.run_id)) for r in parsed]
        checks += self._model_checks(name, version, None if holder is None else int(holder))
        return GateResult(name, version, alias, tuple(checks), all(c.passed for c in checks))

    def promote(
        self,
        name: str,
        version: int,
        *,
        alias: str = "champion",
        requirements: Iterable[str] = (),
        reason: str = "",
        seen: AliasState | None = None,
        report: Callable[[GateResult], None] | None = None,
    ) -> tuple[GateResult, AliasEvent | None]:
        """Gate ``version``, then move ``alias`` to it; GateFailed moves nothing.

        ``seen`` is the caller's view of the alias (read now, before the gate, if omitted): if
        the alias moved since, Conflict. ``report`` sees the gate before anything moves. Returns
        the gate and the event (None when the alias already points at ``version``).
        """
        seen = seen or self.alias_state(name, alias)
        gate = self.validate(name, version, alias=alias, requirements=requirements)
        if report is not None:
            report(gate)
        if not gate.passed:
            failed = "; ".join(f"{c.name}: {c.detail}" for c in gate.checks if not c.passed)
            raise GateFailed(f"version {version} of {name} did not pass: {failed}; nothing moved")
        if seen.version == version:
            self._raise_if_stale(seen, self._ledger(name))
            return gate, None
        return gate, self._move(seen, version, "promote", reason)

    def rollback(
        self,
        name: str,
        *,
        alias: str = "champion",
        to: int | None = None,
        reason: str = "",
        seen: AliasState | None = None,
    ) -> AliasEvent | None:
        """Move ``alias`` back to the version it held before the current one (or to ``to``).

        Returns the event, or None when ``to`` is where the alias already points.
        """
        ledger = self._ledger(name)
        seen = seen or ledger.state(check_alias(alias))
        self._raise_if_stale(seen, ledger)
        if seen.version is None:
            raise GateFailed(f"{alias} of {name} is not set: nothing to roll back")
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
        if target == seen.version:
            return None  # already there (an explicit --to): nothing to move, nothing to record
        with translate_errors(self.uri):
            self._client.get_model_version(name, str(target))
        return self._move(seen, target, "rollback", reason)

    def record_deployment(
        self,
        name: str,
        deployment: str,
        action: AliasAction,
        from_version: int | None,
        to_version: int | None,
        reason: str = "",
    ) -> AliasEvent:
        """Write a container deploy/rollback into the model's history (stream deploy/NAME).

        No claim is taken: the deployment itself is not a registry alias, and the random token
        in every key means two concurrent records cannot overwrite each other.
        """
        if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", deployment):
            raise InvalidInput(f"invalid deployment name {deployment!r}")
        stream = f"{DEPLOY_STREAM}{deployment}"
        last = self._ledger(name).last_event(stream)
        seq = last.seq + 1 if last else 1
        event = AliasEvent(
            id=f"{seq:08d}.{new_token()}",
            model=name,
            alias=stream,
            seq=seq,
            action=action,
            from_version=from_version,
            to_version=to_version,
            who=self.user,
            at=utc_now(),
            reason=reason[:MAX_REASON],
        )
        self._set_tag(name, *encode_event(event))
        return event

    # ------------------------------------------------------------------ the move protocol

    def _move(self, seen: AliasState, to: int, action: AliasAction, reason: str) -> AliasEvent:
        """Claim the alias, check the caller's view is current, move it, record the event."""
        deadline = time.monotonic() + CLAIM_PATIENCE
        backoff = 0.05
        while True:
            self._raise_if_stale(seen, self._ledger(seen.model))
            claim_key, claim_value = encode_claim(seen.alias, new_token(), self.user, to)
            self._set_tag(seen.model, claim_key, claim_value)
            try:
                ledger = self._ledger(seen.model)
                rivals = ledger.live_claims(seen.alias, time.time(), besides=claim_key)
                if not rivals:
                    self._raise_if_stale(seen, ledger, claim_key)
                    return self._commit(ledger, seen.alias, to, action, reason, claim_key)
            finally:
                self._delete_tag(seen.model, claim_key)
            if time.monotonic() > deadline:
                raise Conflict(
                    f"{rivals[0].who} is moving {seen.alias} of {seen.model} right now "
                    f"(to version {rivals[0].to_version}); try again"
                )
            time.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, 1.0)

    def _commit(
        self, ledger: Ledger, alias: str, to: int, action: AliasAction, reason: str, claim: str
    ) -> AliasEvent:
        # Alias first, event second: a crash in between leaves a move that shows as "manual"
        # rather than an event claiming a move that never happened.
        now = utc_now()
        manual = ledger.manual_move(alias, now, noticed_by=self.user, own_claim=claim)
        previous = manual or ledger.last_event(alias)
        seq = previous.seq + 1 if previous else 1
        event = AliasEvent(
            id=f"{seq:08d}.{new_token()}",
            model=ledger.model,
            alias=alias,
            seq=seq,
            action=action,
            from_version=ledger.aliases.get(alias),
            to_version=to,
            who=self.user,
            at=now,
            reason=reason[:MAX_REASON],
        )
        with translate_errors(self.uri):
            self._client.set_registered_model_alias(ledger.model, alias, str(to))
        if manual is not None:
            manual = replace(manual, id=f"{manual.seq:08d}.{new_token()}", recorded=True)
            self._set_tag(ledger.model, *encode_event(manual))
        self._set_tag(ledger.model, *encode_event(event))
        for stale in ledger.claims:
            if stale.alias == alias and now.timestamp() - stale.at >= CLAIM_TTL:
                self._delete_tag(ledger.model, stale.key)
        return event

    def _model_record(self, rm: Any) -> RegisteredModel:
        ledger = Ledger.parse(rm.name, dict(rm.aliases), dict(rm.tags))
        latest = [int(mv.version) for mv in rm.latest_versions or []]
        return RegisteredModel(
            name=rm.name,
            description=rm.description or "",
            aliases=ledger.aliases,
            tags=ledger.user_tags,
            latest_version=max(latest, default=None),
            created=_ms_to_datetime(rm.creation_timestamp),
            updated=_ms_to_datetime(rm.last_updated_timestamp),
        )

    def _version_record(
        self, mv: Any, aliases: dict[str, Any], metrics: dict[str, float]
    ) -> ModelVersion:
        version = int(mv.version)
        held = sorted(a for a, v in aliases.items() if int(v) == version) or mv.aliases or []
        stage = mv.current_stage if mv.current_stage not in (None, "", "None") else None
        return ModelVersion(
            name=mv.name,
            version=version,
            run_id=mv.run_id or None,
            metrics=metrics,
            aliases=tuple(held),
            tags=dict(mv.tags or {}),
            created=_ms_to_datetime(mv.creation_timestamp),
            status=str(mv.status),
            stage=stage,
            source=str(mv.source or ""),
        )

    def _raise_if_stale(self, seen: AliasState, ledger: Ledger, own_claim: str = "") -> None:
        message = stale_message(seen, ledger, own_claim=own_claim)
        if message is not None:
            raise Conflict(f"{message}; nothing moved, check and try again")

    # ------------------------------------------------------------------ helpers

    def _ledger(self, name: str) -> Ledger:
        with translate_errors(self.uri):
            rm = self._client.get_registered_model(name)
        return Ledger.parse(rm.name, dict(rm.aliases), dict(rm.tags))

    def _set_tag(self, name: str, key: str, value: str) -> None:
        with translate_errors(self.uri):
            self._client.set_registered_model_tag(name, key, value)

    def _delete_tag(self, name: str, key: str) -> None:
        with translate_errors(self.uri):
            self._client.delete_registered_model_tag(name, key)

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

    def _model_checks(self, name: str, version: int, holder: int | None) -> list[GateCheck]:
        """The signature check against ``holder`` and the load-and-predict check."""
        import mlflow.pyfunc
        from mlflow.artifacts import download_artifacts
        from mlflow.models import Model

        def fetch(uri: str, into: str) -> str:
            with translate_errors(self.uri):
                return str(
                    download_artifacts(
                        uri, dst_path=into, tracking_uri=self.uri, registry_uri=self.uri
                    )
                )

        with tempfile.TemporaryDirectory(prefix="mlops-gate-") as tmp, using_tracking_uri(self.uri):
            path = fetch(f"models:/{name}/{version}", f"{tmp}/candidate")
            if holder is None or holder == version:
                why = "no version holds the alias" if holder is None else "it holds the alias"
                signature = GateCheck("signature", True, f"{why}; nothing to compare")
            else:
                held = Model.load(fetch(f"models:/{name}/{holder}/MLmodel", f"{tmp}/holder"))
                signature = compare_inputs(inputs_of(held), inputs_of(Model.load(path)), holder)
            return [signature, predict_check(mlflow.pyfunc, path)]


def _quote(value: str) -> str:
    return value.replace("'", "\\'")
