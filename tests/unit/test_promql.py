"""PromQL building: escaping of label values, the queries themselves, and the local PromQL math."""

from __future__ import annotations

import ast
import math
import random

import pytest

from backends.errors import InvalidInput
from backends.prometheus.queries import (
    Queries,
    Scope,
    bucket_quantile,
    counter_increase,
    duration_seconds,
    matcher,
    quote,
    selector,
)

NASTY = [
    "",
    "plain",
    'has "quotes"',
    "back\\slash",
    "trailing backslash\\",
    "new\nline",
    "cr\rtab\t",
    "nul\x00bell\x07del\x7f",
    'x"} or up{job="prometheus"} or x{a="',  # an injection attempt
    '\\"',
    "ünïcødé ✓ 模型",
    ".*",  # regex metacharacters mean nothing to an equality matcher
    "}{,=~!",
]


@pytest.mark.parametrize("value", NASTY)
def test_quote_round_trips_and_stays_one_string(value: str) -> None:
    quoted = quote(value)
    # PromQL's escapes (\\ \" \n \r \t \xNN) mean the same in a Python literal.
    assert ast.literal_eval(quoted) == value
    body = quoted[1:-1]
    assert quoted[0] == quoted[-1] == '"'
    assert "\n" not in quoted and "\r" not in quoted  # a raw newline ends a PromQL string
    assert not any(ord(c) < 0x20 or ord(c) == 0x7F for c in quoted)
    # Every quote inside is escaped: nothing can close the string early.
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        assert body[i] != '"', quoted
        i += 1


def test_quote_exact_forms() -> None:
    assert quote('a"b') == r'"a\"b"'
    assert quote("a\\b") == r'"a\\b"'
    assert quote("a\nb") == r'"a\nb"'
    assert quote("\x01") == r'"\x01"'
    assert quote("ü") == '"ü"'


def test_quote_random_strings_round_trip() -> None:
    rng = random.Random(7)
    alphabet = 'ab"\\\n\r\t\x00\x1f\x7f{}=,~!ü€ '
    for _ in range(500):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        assert ast.literal_eval(quote(value)) == value


def test_quote_refuses_text_no_label_can_hold() -> None:
    with pytest.raises(InvalidInput):
        quote("lone \ud800 surrogate")


def test_matchers_and_selectors() -> None:
    assert matcher("model", 'we"ird') == r'model="we\"ird"'
    assert matcher("status", "5..", "=~") == 'status=~"5.."'
    assert selector("up") == "up"
    assert selector("up", [matcher("job", "mlops")]) == 'up{job="mlops"}'
    for bad_label in ("bad-name", "1x", "", "a b", 'x"'):
        with pytest.raises(InvalidInput):
            matcher(bad_label, "v")
    with pytest.raises(InvalidInput):
        matcher("model", "v", op="==")
    for bad_metric in ("1abc", "a-b", "up{}", ""):
        with pytest.raises(InvalidInput):
            selector(bad_metric)


def test_scope_turns_every_field_into_an_escaped_equality_matcher() -> None:
    scope = Scope(deployment="web", model='a"} or up{x="', version="3", instance="h:1")
    assert scope.matchers() == [
        'deployment="web"',
        r'model="a\"} or up{x=\""',
        'version="3"',
        'instance="h:1"',
        'role!="canary"',  # what serves: a canary release's container is asked for by role
    ]
    assert scope.admits(
        {"deployment": "web", "model": 'a"} or up{x="', "version": "3", "instance": "h:1"}
    )
    assert not scope.admits({"deployment": "web"})
    assert Scope().matchers() == ['role!="canary"'] and Scope().admits({})
    assert Scope(deployment="web", role="canary").matchers() == [
        'deployment="web"',
        'role="canary"',
    ]


def test_queries_per_deployment() -> None:
    q = Queries(Scope(deployment='we"b'), "1m")
    by = "deployment, model, version, alias, instance"
    sel = r'{deployment="we\"b",role!="canary"}'
    assert q.request_rate() == f"sum by ({by}) (rate(mlops_requests_total{sel}[1m]))"
    assert q.latency_quantile(0.99) == (
        f"histogram_quantile(0.99, sum by ({by}, le) "
        f"(rate(mlops_request_duration_seconds_bucket{sel}[1m])))"
    )
    five = (
        f"sum by ({by}) (rate(mlops_requests_total"
        '{deployment="we\\"b",role!="canary",status=~"5.."}[1m]))'
    )
    total = f"sum by ({by}) (rate(mlops_requests_total{sel}[1m]))"
    assert q.error_ratio() == f"({five} or {total} * 0) / {total}"
    assert (
        q.feature_gauge("mlops_feature_psi") == f"max by ({by}, feature) (mlops_feature_psi{sel})"
    )
    assert q.feature_gauge("mlops_feature_ks_pvalue", "min").startswith("min by (")
    assert q.up("mlops") == (
        f'max by ({by}) (up{{deployment="we\\"b",role!="canary",job="mlops"}})'
    )
    assert q.alerts() == f"ALERTS{sel}"


def test_queries_per_model_version() -> None:
    q = Queries(Scope(model="iris"), "5m", per="version")
    assert q.request_rate() == (
        'sum by (model, version) (rate(mlops_requests_total{model="iris",role!="canary"}[5m]))'
    )
    assert q.batch_size_mean() == (
        'sum by (model, version) (rate(mlops_batch_size_sum{model="iris",role!="canary"}[5m])) / '
        'sum by (model, version) (rate(mlops_batch_size_count{model="iris",role!="canary"}[5m]))'
    )


def test_queries_refuse_bad_windows_and_quantiles() -> None:
    for window in ("1", "5x", "1m)", "1m] or vector(1) #", ""):
        with pytest.raises(InvalidInput):
            Queries(window=window)
    with pytest.raises(InvalidInput):
        Queries().latency_quantile(1.5)


def test_durations() -> None:
    assert duration_seconds("30s") == 30
    assert duration_seconds("1m") == 60
    assert duration_seconds("1h30m") == 5400
    assert duration_seconds("500ms") == 0.5


# --------------------------------------------------------------------------- histogram_quantile


def test_quantile_interpolates_linearly_inside_the_bucket() -> None:
    buckets = [(0.1, 10.0), (0.2, 30.0), (math.inf, 40.0)]
    assert bucket_quantile(0.5, buckets) == pytest.approx(0.15)  # rank 20: half into (0.1, 0.2]
    assert bucket_quantile(0.25, buckets) == pytest.approx(0.1)  # rank 10: the bucket's top


def test_quantile_first_bucket_starts_at_zero() -> None:
    assert bucket_quantile(0.5, [(1.0, 10.0), (math.inf, 10.0)]) == pytest.approx(0.5)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert bucket_quantile(0.9, [(1.0, 1.0), (2.0, 2.0), (math.inf, 10.0)]) == 2.0


def test_quantile_non_positive_first_bucket_returns_its_bound() -> None:
    assert bucket_quantile(0.1, [(-1.0, 5.0), (math.inf, 10.0)]) == -1.0


def test_quantile_special_cases_match_prometheus() -> None:
    assert bucket_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]) is None  # no observations
    assert bucket_quantile(0.5, [(1.0, 3.0), (2.0, 4.0)]) is None  # no +Inf bucket
    assert bucket_quantile(0.5, [(math.inf, 4.0)]) is None  # fewer than two buckets
    assert bucket_quantile(0.5, []) is None
    assert bucket_quantile(math.nan, [(1.0, 1.0), (math.inf, 1.0)]) is None
    assert bucket_quantile(-0.1, [(1.0, 1.0), (math.inf, 1.0)]) == -math.inf
    assert bucket_quantile(1.1, [(1.0, 1.0), (math.inf, 1.0)]) == math.inf


def test_quantile_sorts_coalesces_and_forces_monotonic_counts() -> None:
    unsorted = [(math.inf, 40.0), (0.2, 30.0), (0.1, 10.0)]
    assert bucket_quantile(0.5, unsorted) == pytest.approx(0.15)
    # Two series with the same bound add up (as after `sum by (le)` over mixed label sets).
    split = [(0.1, 4.0), (0.1, 6.0), (0.2, 30.0), (math.inf, 40.0)]
    assert bucket_quantile(0.5, split) == pytest.approx(0.15)
    # A dip (a bucket lower than the one before) is lifted to the envelope, as Prometheus does.
    dipping = [(0.1, 10.0), (0.2, 8.0), (0.4, 30.0), (math.inf, 40.0)]
    assert bucket_quantile(0.5, dipping) == pytest.approx(0.2 + 0.2 * (10 / 20))


def test_quantile_of_known_observations_lands_in_their_bucket() -> None:
    bounds = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, math.inf]
    rng = random.Random(1)
    observations = [rng.lognormvariate(-5, 0.8) for _ in range(5000)]
    buckets = [(b, float(sum(o <= b for o in observations))) for b in bounds]
    p99 = bucket_quantile(0.99, buckets)
    true_p99 = sorted(observations)[int(0.99 * len(observations)) - 1]
    assert p99 is not None
    upper = next(b for b in bounds if true_p99 <= b)
    lower = max([0.0] + [b for b in bounds if b < upper])
    assert lower <= p99 <= upper


def test_counter_increase_survives_a_restart() -> None:
    assert counter_increase(10, 15) == 5
    assert counter_increase(10, 3) == 3  # the process restarted: it counted 3 since
