"""Alertmanager's matcher syntax and semantics, as the silence plans count matching alerts."""

from __future__ import annotations

import pytest

from backends.errors import InvalidInput
from backends.prometheus.matchers import (
    check_silenceable,
    matches,
    parse_matcher,
    parse_matchers,
)
from backends.records.alerts import Matcher


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('deployment="web"', Matcher("deployment", "web", "=")),
        ("deployment=web", Matcher("deployment", "web", "=")),
        ('severity!="info"', Matcher("severity", "info", "!=")),
        ('alertname=~"Mlops.*Drift"', Matcher("alertname", "Mlops.*Drift", "=~")),
        ('feature !~ "petal_.*"', Matcher("feature", "petal_.*", "!~")),
        ('msg="say \\"hi\\", then go"', Matcher("msg", 'say "hi", then go', "=")),
        ('path="a\\\\b"', Matcher("path", "a\\b", "=")),
        ('empty=""', Matcher("empty", "", "=")),
    ],
)
def test_parse(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "expected name=value"),
        ("9lives=1", "expected name=value"),
        ("deployment", "comes =, !=, =~ or !~"),
        ('deployment=="web"', "quote"),
        ('deployment="web', "not closed"),
        ('deployment="web" extra', "after the closing quote"),
        ("deployment=two words", "quote a value"),
        ('alertname=~"(unclosed"', "bad regex"),
        ("x=" + "a" * 2000, "too long"),
    ],
)
def test_bad_matchers_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidInput, match=why):
        parse_matcher(text)


def test_lists_and_braces_split_outside_quotes() -> None:
    assert parse_matchers(['{alertname="A", msg="x, y"}', "deployment=web,severity=critical"]) == (
        Matcher("alertname", "A"),
        Matcher("msg", "x, y"),
        Matcher("deployment", "web"),
        Matcher("severity", "critical"),
    )


def test_regexes_match_the_whole_value_and_missing_labels_are_empty() -> None:
    drift = parse_matcher('alertname=~"Mlops.*Drift"')
    assert matches(drift, {"alertname": "MlopsFeatureDrift"})
    assert not matches(drift, {"alertname": "MlopsFeatureDriftX"})  # anchored at the end
    assert not matches(drift, {"alertname": "XMlopsFeatureDrift"})  # and at the start
    assert matches(parse_matcher('team!="ml"'), {})  # absent: "" which is not "ml"
    assert not matches(parse_matcher('team="ml"'), {})
    assert matches(parse_matcher('team=""'), {})
    assert matches(parse_matcher('feature!~"petal_.*"'), {"feature": "sepal_width"})


@pytest.mark.parametrize(
    "texts",
    [[], ['alertname=~".*"'], ['team!="ml"'], ['x=""', 'y!~"a+"']],
)
def test_a_silence_that_would_match_everything_is_refused(texts: list[str]) -> None:
    with pytest.raises(InvalidInput):
        check_silenceable(parse_matchers(texts))


def test_a_silence_needs_one_matcher_that_requires_a_value() -> None:
    check_silenceable(parse_matchers(['alertname=~".*"', 'deployment="web"']))
