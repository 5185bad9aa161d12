"""Moving an alias and writing its history: the claim protocol on registered-model tags.

MLflow has no compare-and-set, so a move first takes a claim on the alias ("write, then read",
as in Lamport's fast mutual exclusion):

1. write ``mlops.claim.<alias>.<token>``;
2. read all tags in one request; if another live claim is there, withdraw and retry after a
   random back-off while the alias is unchanged; if the alias or its newest event differs from
   what the caller saw, withdraw and raise Conflict naming who moved it;
3. otherwise write the event (seq = newest + 1) marked pending, set the alias, confirm the
   event, and delete the claim: a crash between leaves a pending event that readers drop
   (the alias did not move) or confirm (it did), never a move without its event.

Of two writers that both write before they read, both see each other and back off; one that
reads after the holder finished sees the holder's event and stops as stale. So moves are
serialised: each event's ``from`` is the previous ``to``, and the alias ends at the newest
event's version. A claim older than ``CLAIM_TTL`` (a crashed process) or dated in the future
beyond ``CLAIM_SKEW`` (forged) is ignored and removed; a holder stops, and refuses, once its
claim is half that old or was taken away, so a slow server cannot let two holders move at
once. A manual move (the alias differs from its newest event and no claim is live) is written
down as a ``manual`` event by the next move.
"""

from __future__ import annotations

import contextlib
import random
import re
import time
from dataclasses import replace
from typing import Any

from backends.errors import Conflict, InvalidInput
from backends.mlflow.client import translate_errors
from backends.mlflow.history import (
    CLAIM_TTL,
    DEPLOY_STREAM,
    MANUAL_MOVE,
    Claim,
    Ledger,
    encode_claim,
    encode_event,
    new_token,
    stale_message,
    utc_now,
)
from backends.mlflow.history_tags import fitted
from backends.records import AliasAction, AliasEvent, AliasState

__all__ = ["CLAIM_PATIENCE", "ModelTags"]

CLAIM_PATIENCE = 20.0  # seconds to keep retrying while another operator holds the alias


def _order(claim: Claim) -> tuple[float, str]:
    return claim.at, claim.key


class ModelTags:
    """A registered model's tags on one MLflow client: read as a ledger, written one by one."""

    def __init__(self, client: Any, tracking_uri: str, user: str) -> None:
        self._client = client
        self.uri = tracking_uri
        self.user = user

    def ledger(self, name: str) -> Ledger:
        """One read of the model: aliases, history, claims and user tags."""
        with translate_errors(self.uri):
            rm = self._client.get_registered_model(name)
        return Ledger.parse(rm.name, dict(rm.aliases), dict(rm.tags))

    def set(self, name: str, key: str, value: str) -> None:
        with translate_errors(self.uri):
            self._client.set_registered_model_tag(name, key, value)

    def delete(self, name: str, key: str) -> None:
        with translate_errors(self.uri):
            self._client.delete_registered_model_tag(name, key)

    def raise_if_stale(self, seen: AliasState, ledger: Ledger, own_claim: str = "") -> None:
        """Conflict, naming who moved it, when the alias is no longer where ``seen`` was."""
        message = stale_message(seen, ledger, own_claim=own_claim)
        # A move that looks manual may be one in flight, read half-way: MLflow reads a model's
        # tags and its aliases in separate queries, so one read can show a mover's new alias
        # without its claim, written before it. A later read shows the claim or the event
        # (the claim goes only once the event is written); a manual move stays manual.
        for pause in (0.05, 0.2, 0.5):
            if message is None or MANUAL_MOVE not in message:
                break
            time.sleep(pause)
            message = stale_message(seen, self.ledger(seen.model), own_claim=own_claim)
        if message is not None:
            raise Conflict(f"{message}; nothing moved, check and try again")

    # ------------------------------------------------------------------ moves

    def move(self, seen: AliasState, to: int, action: AliasAction, reason: str) -> AliasEvent:
        """Claim the alias, check the caller's view is current, move it, record the event.

        A holder moves only when it sees no other live claim (that is what makes moves
        exclusive, whatever the clocks say). When claims meet, the oldest (by its recorded time,
        then key: every claimant orders them alike) keeps its claim and waits; the others
        withdraw and claim again later. So a crowd makes progress instead of every claimant
        backing off from every other.
        """
        deadline = time.monotonic() + CLAIM_PATIENCE
        backoff = 0.05
        rivals: list[Claim] = []
        while True:
            before = self.ledger(seen.model)
            self.raise_if_stale(seen, before)
            busy = before.live_claims(seen.alias, time.time())
            if busy and time.monotonic() < deadline:
                # Someone is moving it: claiming now would only make the crowd bigger. Wait
                # for the alias to be free (or for its move to make our view stale).
                rivals = busy
                time.sleep(random.uniform(backoff / 2, backoff))
                backoff = min(backoff * 2, 0.5)
                continue
            claim_key, claim_value = encode_claim(seen.alias, new_token(), self.user, to)
            self.set(seen.model, claim_key, claim_value)
            claimed = time.monotonic()
            try:
                while True:
                    ledger = self.ledger(seen.model)
                    rivals = ledger.live_claims(seen.alias, time.time(), besides=claim_key)
                    if not rivals:
                        self.raise_if_stale(seen, ledger, claim_key)
                        return self._commit(
                            ledger, seen.alias, to, action, reason, claim_key, claimed
                        )
                    mine = next((c for c in ledger.claims if c.key == claim_key), None)
                    oldest = mine is not None and all(_order(mine) < _order(r) for r in rivals)
                    if not oldest or time.monotonic() > deadline:
                        break  # withdraw: an older claimant goes first
                    self.raise_if_stale(seen, ledger, claim_key)
                    time.sleep(random.uniform(0.02, 0.1))  # hold on while the others withdraw
            finally:
                self.delete(seen.model, claim_key)
            if time.monotonic() > deadline:
                raise Conflict(
                    f"{rivals[0].who} is moving {seen.alias} of {seen.model} right now "
                    f"(to version {rivals[0].to_version}); try again"
                )
            time.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, 1.0)

    def _still_holding(self, model: str, alias: str, claim: str, claimed: float) -> None:
        """Conflict when this holder may no longer count on its claim: taken away, or older
        than half its lifetime (a slow server), after which a rival may rightly ignore it."""
        if time.monotonic() - claimed > CLAIM_TTL / 2:
            raise Conflict(
                f"moving {alias} of {model} took longer than the claim allows "
                f"({CLAIM_TTL / 2:.0f}s; the tracking server is slow): nothing moved, try again"
            )
        if not any(c.key == claim for c in self.ledger(model).claims):
            raise Conflict(
                f"the claim on {alias} of {model} was taken away while moving it; "
                "nothing moved, check and try again"
            )

    def _commit(
        self,
        ledger: Ledger,
        alias: str,
        to: int,
        action: AliasAction,
        reason: str,
        claim: str,
        claimed: float,
    ) -> AliasEvent:
        # The event first, pending; then the alias; then the event confirmed. A crash in
        # between leaves a pending event that readers drop (the alias never moved) or confirm
        # (it did): never a move without its event, nor an event for a move that did not happen.
        now = utc_now()
        for dead in ledger.dead_claims(alias, now.timestamp()):
            self.delete(ledger.model, dead.key)  # expired, or forged with a future date
        manual = ledger.manual_move(alias, now, noticed_by=self.user, own_claim=claim)
        seq = ledger.next_seq(alias) + (1 if manual is not None else 0)
        event = fitted(
            AliasEvent(
                id=f"{seq:08d}.{new_token()}",
                model=ledger.model,
                alias=alias,
                seq=seq,
                action=action,
                from_version=ledger.aliases.get(alias),
                to_version=to,
                who=self.user,
                at=now,
                reason=reason,
                pending=True,
            )
        )
        self._still_holding(ledger.model, alias, claim, claimed)
        if manual is not None:
            manual = replace(manual, id=f"{manual.seq:08d}.{new_token()}", recorded=True)
            self.set(ledger.model, *encode_event(manual))
        key, value = encode_event(event)
        self.set(ledger.model, key, value)
        try:
            with translate_errors(self.uri):
                self._client.set_registered_model_alias(ledger.model, alias, str(to))
        except BaseException:
            with contextlib.suppress(Exception):  # readers would drop it anyway
                self.delete(ledger.model, key)
            raise
        done = replace(event, pending=False)
        self.set(ledger.model, *encode_event(done))
        return done

    def record_outside_move(self, name: str, alias: str, note: str) -> AliasEvent | None:
        """Write down a move made outside mlops now, as told by the registry's webhook: a
        ``manual`` event (who: unknown, MLflow does not say), unless the alias stands where
        its newest event says (our own move) or someone holds a claim on it (they are moving
        it, and record what they find). A brief claim of our own keeps two deliveries of one
        move from writing it twice: when they meet, the oldest claim writes (as for moves)."""
        before = self.ledger(name)
        last = before.last_event(alias)
        if before.aliases.get(alias) == (last.to_version if last else None):
            return None  # where its newest event left it: our own move, or recorded already
        claim_key, claim_value = encode_claim(alias, new_token(), self.user, None)
        self.set(name, claim_key, claim_value)
        try:
            deadline = time.monotonic() + 10
            while True:
                ledger = self.ledger(name)
                rivals = ledger.live_claims(alias, time.time(), besides=claim_key)
                mine = next((c for c in ledger.claims if c.key == claim_key), None)
                if mine is None or any(_order(r) < _order(mine) for r in rivals):
                    # An older claimant goes first, as for moves (MLflow delivers in parallel,
                    # so two deliveries of one model meet often): it, or a mover, writes it.
                    return None
                if not rivals:
                    break
                if time.monotonic() > deadline:
                    return None  # younger ones that never withdrew: the next read detects it
                time.sleep(random.uniform(0.02, 0.1))  # the younger ones are withdrawing
            manual = ledger.manual_move(alias, utc_now(), own_claim=claim_key)
            if manual is None:
                return None
            manual = fitted(
                replace(manual, id=f"{manual.seq:08d}.{new_token()}", recorded=True, reason=note)
            )
            self.set(name, *encode_event(manual))
            return manual
        finally:
            self.delete(name, claim_key)

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
        seq = self.ledger(name).next_seq(stream)
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
            reason=reason,
        )
        self.set(name, *encode_event(event))
        return fitted(event)
