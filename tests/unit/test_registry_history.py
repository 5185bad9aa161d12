"""The alias history's pure logic: tag encoding, manual-move detection, rollback, staleness."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from backends.mlflow.history import (
    CLAIM_TTL,
    Ledger,
    current_user,
    decode_event,
    encode_event,
    history_of,
    rollback_target,
    stale_message,
)
from backends.mlflow.history_tags import CLAIM_SKEW, MAX_VALUE, Unreadable
from backends.records import AliasAction, AliasEvent, AliasState

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def event(
    seq: int,
    action: AliasAction,
    src: int | None,
    dst: int | None,
    *,
    alias: str = "champion",
    who: str = "alice",
    reason: str = "",
) -> AliasEvent:
    return AliasEvent(
        id=f"{seq:08d}.ab{seq:06x}",
        model="iris",
        alias=alias,
        seq=seq,
        action=action,
        from_version=src,
        to_version=dst,
        who=who,
        at=T0 + timedelta(minutes=seq),
        reason=reason,
    )


def ledger(*events: AliasEvent, aliases: dict[str, int], extra: dict[str, str] | None = None):
    tags = dict(encode_event(e) for e in events)
    return Ledger.parse("iris", aliases, {**tags, **(extra or {})})


def claim(alias: str, who: str, age: float) -> dict[str, str]:
    value = json.dumps({"who": who, "to": 9, "at": time.time() - age})
    return {f"mlops.claim.{alias}.{who}0123": value}


# --------------------------------------------------------------------------- encoding


def test_event_round_trips_through_a_tag() -> None:
    original = event(7, "rollback", 3, 2, reason="p99 latency doubled; see INC-12 ✓")
    key, value = encode_event(original)
    assert key == "mlops.history.champion.00000007.ab000007"
    assert len(key) < 250 and json.loads(value)["v"] == 2
    assert decode_event("iris", key, value) == original


def test_keys_sort_in_event_order_and_never_collide() -> None:
    keys = [encode_event(event(seq, "promote", seq, seq + 1))[0] for seq in (1, 2, 10, 100)]
    assert keys == sorted(keys)
    twin = AliasEvent(**{**event(2, "promote", 2, 3).__dict__, "id": "00000002.ffffffff"})
    assert encode_event(twin)[0] != keys[1]  # same seq from two writers: two tags, none lost


def test_none_versions_survive() -> None:
    original = event(1, "manual", None, 4, who="unknown")
    assert decode_event("iris", *encode_event(original)) == original


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("mlops.history.champion.00000001.ab", "not json", "not JSON"),
        ("mlops.history.champion.00000001.ab", '{"action": "delete", "at": "x"}', "action"),
        ("mlops.history.champion.00000001.ab", '{"action": "promote"}', "do not parse"),
        (
            "mlops.history.champion.00000001.ab",
            '{"action": "promote", "at": "2026-01-02T03:04:05"}',
            "no time zone",
        ),
        ("mlops.history.champion.00000001.ab", '{"action": "promote", "to": true}', "parse"),
        ("mlops.history.champion", "{}", "key"),
        ("mlops.history.champion.00000001.ab", "x" * 5001, "characters"),
        ("mlops.history.champion.00000001.ab", "[1, 2]", "object"),
    ],
)
def test_entries_under_the_prefix_that_do_not_parse_are_unreadable(
    key: str, value: str, why: str
) -> None:
    found = decode_event("iris", key, value)
    assert isinstance(found, Unreadable) and why in found.why


def test_tags_outside_the_prefix_are_not_ours() -> None:
    assert decode_event("iris", "team", "search") is None


def test_sequence_numbers_have_no_width_and_order_numerically() -> None:
    wide = AliasEvent(
        **{**event(2, "promote", 2, 3).__dict__, "id": "123456789.ab", "seq": 123456789}
    )
    book = ledger(event(1, "promote", None, 2), wide, aliases={"champion": 3})
    assert [e.seq for e in book.events_of("champion")] == [1, 123456789]
    assert book.next_seq("champion") == 123456790
    assert book.state("champion").last_event_id == "123456789.ab"


def test_a_forged_entry_is_reported_and_the_valid_ones_still_count() -> None:
    forged = {
        "mlops.history.champion.00000009.zz": "not json",
        "mlops.history.champion.00000010.zz": '{"action": "promote", "at": "2026-01-01T00:00"}',
    }
    book = ledger(event(1, "promote", None, 2), aliases={"champion": 2}, extra=forged)
    assert [e.seq for e in book.events_of("champion")] == [1]
    assert {u.key for u in book.unreadable} == set(forged)
    assert book.manual_move("champion", T0) is None  # the valid history still explains it


def test_a_claim_dated_in_the_future_is_not_live_and_is_swept() -> None:
    future = {
        "mlops.claim.champion.eve0123": json.dumps(
            {"who": "eve", "to": 9, "at": time.time() + 10**9}
        )
    }
    book = ledger(aliases={}, extra=future)
    now = time.time()
    assert book.live_claims("champion", now) == []
    assert [c.who for c in book.dead_claims("champion", now)] == ["eve"]
    skewed = claim("champion", "bob", -(CLAIM_SKEW / 2))  # a little ahead: a clock, not forged
    assert [c.who for c in ledger(aliases={}, extra=skewed).live_claims("champion", now)] == ["bob"]


def test_a_pending_event_counts_once_the_alias_moved_and_not_before() -> None:
    pending = AliasEvent(**{**event(2, "promote", 1, 2).__dict__, "pending": True})
    moved = ledger(event(1, "promote", None, 1), pending, aliases={"champion": 2})
    assert [e.to_version for e in moved.events_of("champion")] == [1, 2]
    assert not moved.events_of("champion")[-1].pending
    stopped = ledger(event(1, "promote", None, 1), pending, aliases={"champion": 1})
    assert [e.to_version for e in stopped.events_of("champion")] == [1]
    assert stopped.manual_move("champion", T0) is None  # no phantom manual move
    assert stopped.next_seq("champion") == 3  # its number is not reused


def test_reason_and_who_are_cut_to_fit_the_stores_limit_as_it_counts() -> None:
    long = event(3, "promote", 1, 2, reason="é€" * 6000, who="ö" * 300)
    key, value = encode_event(long)
    assert len(value) <= MAX_VALUE  # characters, as PostgreSQL counts them
    back = decode_event("iris", key, value)
    assert isinstance(back, AliasEvent) and back.reason.endswith("[truncated]")
    assert back.reason.startswith("é€é€") and back.who == "ö" * 300


def test_ledger_separates_history_claims_and_user_tags() -> None:
    book = ledger(
        event(2, "promote", 1, 2),
        event(1, "promote", None, 1),
        event(1, "promote", None, 5, alias="challenger"),
        aliases={"champion": "2", "challenger": 5},  # type: ignore[dict-item]  # REST gives str
        extra={"team": "search", **claim("champion", "bob", age=1)},
    )
    assert book.aliases == {"champion": 2, "challenger": 5}
    assert book.user_tags == {"team": "search"}
    assert [e.seq for e in book.events_of("champion")] == [1, 2]
    assert book.last_event("champion") == event(2, "promote", 1, 2)
    assert [c.who for c in book.live_claims("champion", time.time())] == ["bob"]
    assert book.state("champion") == AliasState("iris", "champion", 2, "00000002.ab000002")
    assert book.state("shadow") == AliasState("iris", "shadow", None, None)


# --------------------------------------------------------------------------- manual moves


def test_consistent_alias_has_no_manual_move() -> None:
    book = ledger(event(1, "promote", None, 1), aliases={"champion": 1})
    assert book.manual_move("champion", T0) is None
    assert history_of(book) == [event(1, "promote", None, 1)]


def test_alias_moved_outside_mlops_is_detected_as_manual() -> None:
    book = ledger(event(1, "promote", None, 1), event(2, "promote", 1, 2), aliases={"champion": 5})
    now = T0 + timedelta(hours=1)
    manual = book.manual_move("champion", now)
    assert manual is not None
    assert (manual.action, manual.from_version, manual.to_version) == ("manual", 2, 5)
    assert (manual.who, manual.seq, manual.recorded, manual.at) == ("unknown", 3, False, now)
    assert history_of(book, now=now)[-1] == manual


def test_manual_alias_deletion_and_alias_set_before_any_history() -> None:
    book = ledger(event(1, "promote", None, 1), aliases={"challenger": 4})
    gone, fresh = book.manual_move("champion", T0), book.manual_move("challenger", T0)
    assert gone is not None and (gone.from_version, gone.to_version) == (1, None)
    assert fresh is not None and (fresh.from_version, fresh.to_version, fresh.seq) == (None, 4, 1)
    assert [e.alias for e in history_of(book, now=T0 + timedelta(days=1))] == [
        "champion",
        "challenger",
        "champion",
    ]
    assert [e.action for e in history_of(book, "challenger", now=T0)] == ["manual"]


def test_a_move_in_flight_is_not_mistaken_for_a_manual_one() -> None:
    # The holder sets the alias before writing its event; its live claim explains the gap.
    live = ledger(
        event(1, "promote", None, 1), aliases={"champion": 2}, extra=claim("champion", "bob", 1)
    )
    assert live.manual_move("champion", datetime.now(UTC)) is None
    # ...unless that claim is one's own, or too old to be alive (a crashed process).
    own = next(iter(claim("champion", "bob", 1)))
    assert live.manual_move("champion", datetime.now(UTC), own_claim=own) is not None
    dead = ledger(
        event(1, "promote", None, 1),
        aliases={"champion": 2},
        extra=claim("champion", "bob", CLAIM_TTL + 1),
    )
    assert dead.manual_move("champion", datetime.now(UTC)) is not None


# --------------------------------------------------------------------------- rollback


def test_rollback_goes_back_through_promotions_not_version_minus_one() -> None:
    events = [event(1, "promote", None, 1), event(2, "promote", 1, 5), event(3, "promote", 5, 3)]
    assert rollback_target(events, current=3) == 5
    events.append(event(4, "rollback", 3, 5))
    assert rollback_target(events, current=5) == 1  # twice in a row: two steps back
    events.append(event(5, "rollback", 5, 1))
    assert rollback_target(events, current=1) is None  # nothing before the first promotion


def test_rollback_after_a_manual_move_undoes_it() -> None:
    events = [event(1, "promote", None, 1), event(2, "promote", 1, 2), event(3, "manual", 2, 7)]
    assert rollback_target(events, current=7) == 2


def test_rollback_to_an_explicit_version_in_the_history_truncates_it() -> None:
    events = [event(i + 1, "promote", i or None, i + 1) for i in range(4)]  # None→1→2→3→4
    events.append(event(5, "rollback", 4, 2))  # --to 2
    assert rollback_target(events, current=2) == 1


def test_rollback_to_a_version_that_never_held_the_alias_acts_like_a_move() -> None:
    events = [event(1, "promote", None, 1), event(2, "promote", 1, 2), event(3, "rollback", 2, 9)]
    assert rollback_target(events, current=9) == 2


def test_rollback_skips_entries_equal_to_the_current_version() -> None:
    events = [event(1, "promote", None, 1), event(2, "promote", 1, 2), event(3, "manual", 2, 1)]
    assert rollback_target(events, current=1) == 2
    assert rollback_target([], current=1) is None


# --------------------------------------------------------------------------- stale views


def test_current_view_is_not_stale() -> None:
    book = ledger(event(1, "promote", None, 1), aliases={"champion": 1})
    assert stale_message(book.state("champion"), book) is None


def test_stale_view_names_who_moved_the_alias() -> None:
    seen = ledger(event(1, "promote", None, 1), aliases={"champion": 1}).state("champion")
    moved = ledger(
        event(1, "promote", None, 1), event(2, "promote", 1, 4, who="bob"), aliases={"champion": 4}
    )
    message = stale_message(seen, moved)
    assert message is not None
    assert "champion of iris moved since you read it (at version 1)" in message
    assert "bob promoted version 4 at 2026-01-02 03:06:05 UTC" in message


def test_stale_view_catches_a_move_away_and_back() -> None:
    seen = ledger(event(1, "promote", None, 1), aliases={"champion": 1}).state("champion")
    back = ledger(
        event(1, "promote", None, 1),
        event(2, "promote", 1, 4, who="bob"),
        event(3, "rollback", 4, 1, who="carol"),
        aliases={"champion": 1},
    )
    message = stale_message(seen, back)
    assert message is not None and "carol rolled back to version 1" in message


def test_stale_view_from_a_manual_move() -> None:
    seen = ledger(event(1, "promote", None, 1), aliases={"champion": 1}).state("champion")
    manual = ledger(event(1, "promote", None, 1), aliases={"champion": 6})
    message = stale_message(seen, manual)
    assert message is not None and "outside mlops (manual) to version 6" in message


# --------------------------------------------------------------------------- who


def test_who_is_mlops_user_or_the_os_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLOPS_USER", "  ops-bot ")
    assert current_user() == "ops-bot"
    monkeypatch.delenv("MLOPS_USER")
    monkeypatch.setattr("getpass.getuser", lambda: "alice")
    assert current_user() == "alice"


def test_stale_view_during_a_move_in_flight_names_the_mover() -> None:
    # The holder has set the alias but not yet written its event: its claim says who it is.
    seen = ledger(event(1, "promote", None, 1), aliases={"champion": 1}).state("champion")
    in_flight = ledger(
        event(1, "promote", None, 1), aliases={"champion": 9}, extra=claim("champion", "bob", 1)
    )
    message = stale_message(seen, in_flight)
    assert message is not None and "bob is moving it to version 9 right now" in message
