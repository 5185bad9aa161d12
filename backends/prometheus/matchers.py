"""Alertmanager's label matchers: parsed from what an operator types, matched as it matches.

``name="value"``, ``name!="value"``, ``name=~"regex"``, ``name!~"regex"``; the quotes are
optional for a value without spaces, commas or quotes. A regex matches the whole label value
(Alertmanager anchors it), and a missing label is the empty string. Alertmanager refuses a
silence whose matchers all match the empty string (it would silence everything); so do we,
before posting, with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from backends.errors import InvalidInput
from backends.records.alerts import Matcher, MatchOp

__all__ = ["check_silenceable", "matches", "matches_all", "parse_matcher", "parse_matchers"]

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPS: tuple[MatchOp, ...] = ("=~", "!~", "!=", "=")
MAX_MATCHER = 1000  # characters: a matcher is typed or copied, never a document


def parse_matcher(text: str) -> Matcher:
    """One matcher from ``name<op>value``; InvalidInput names what is wrong with it."""
    raw = text.strip()
    if len(raw) > MAX_MATCHER:
        raise InvalidInput(f"matcher too long ({len(raw)} characters; at most {MAX_MATCHER})")
    name_match = _NAME.match(raw)
    if name_match is None:
        raise InvalidInput(
            f"bad matcher {text!r}: expected name=value, name!=value, name=~regex or name!~regex"
        )
    name, rest = name_match.group(), raw[name_match.end() :].lstrip()
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise InvalidInput(f"bad matcher {text!r}: after {name!r} comes =, !=, =~ or !~")
    value = _value(rest[len(op) :].strip(), text)
    matcher = Matcher(name, value, op)
    if matcher.is_regex:
        _compiled(matcher)
    return matcher


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    """Each of ``texts`` a matcher; ``{a="b", c=~"d"}`` and comma lists are split first."""
    out: list[Matcher] = []
    for text in texts:
        out.extend(parse_matcher(part) for part in _split(text))
    return tuple(out)


def check_silenceable(matchers: tuple[Matcher, ...]) -> None:
    """InvalidInput unless some matcher needs a non-empty value (else it silences everything)."""
    if not matchers:
        raise InvalidInput('a silence needs at least one matcher (e.g. deployment="web")')
    if all(matches(m, {}) for m in matchers):
        shown = ", ".join(str(m) for m in matchers)
        raise InvalidInput(
            f"{shown} also match alerts without those labels: a silence needs at least one "
            'matcher that requires a value (e.g. alertname="MlopsFeatureDrift")'
        )


def matches(matcher: Matcher, labels: Mapping[str, str]) -> bool:
    value = labels.get(matcher.name, "")
    if matcher.op == "=":
        return value == matcher.value
    if matcher.op == "!=":
        return value != matcher.value
    hit = _compiled(matcher).fullmatch(value) is not None
    return hit if matcher.op == "=~" else not hit


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(matches(m, labels) for m in matchers)


def _compiled(matcher: Matcher) -> re.Pattern[str]:
    try:
        return re.compile(matcher.value)
    except re.error as exc:
        raise InvalidInput(f"bad regex in {matcher}: {exc}") from None


def _value(rest: str, text: str) -> str:
    if not rest.startswith('"'):
        if any(c in rest for c in ' ,"{}'):
            raise InvalidInput(f"bad matcher {text!r}: quote a value with spaces or commas")
        return rest
    out, i = [], 1
    while i < len(rest):
        c = rest[i]
        if c == "\\" and i + 1 < len(rest):
            nxt = rest[i + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            if rest[i + 1 :].strip():
                raise InvalidInput(f"bad matcher {text!r}: text after the closing quote")
            return "".join(out)
        out.append(c)
        i += 1
    raise InvalidInput(f"bad matcher {text!r}: the value's quote is not closed")


def _split(text: str) -> list[str]:
    """``{a="b", c="d"}`` or ``a=b,c=d`` into its matchers (commas inside quotes kept)."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    parts, current, quoted, escaped = [], [], False, False
    for c in body:
        if escaped:
            current.append(c)
            escaped = False
            continue
        if c == "\\":
            escaped = True
            current.append(c)
            continue
        if c == '"':
            quoted = not quoted
        if c == "," and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(c)
    parts.append("".join(current))
    return [p for p in (p.strip() for p in parts) if p]
