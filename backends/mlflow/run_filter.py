"""MLflow's run search syntax, parsed without importing mlflow (which costs ~2 s).

The local run index (``backends.mlflow.run_index``) answers filters and orderings itself, so it must
read them exactly as the tracking server does. This parser accepts a strict subset of MLflow's
grammar, with MLflow's own rules per entity type (which comparators, which value types, which
attribute keys); anything else raises ``Unsupported``, and the caller then asks the server,
which either explains the mistake in its own words or answers the query itself. Accepting less
than MLflow is therefore safe; accepting more never happens (a unit test compares this parser
with ``mlflow.utils.search_utils`` on a corpus of filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

__all__ = ["Clause", "OrderKey", "Unsupported", "parse_filter", "parse_order_by"]

Kind = Literal["metric", "param", "tag", "attribute", "dataset"]
Value = float | int | str | tuple[str, ...] | None

_KINDS: dict[str, Kind] = {
    "metric": "metric",
    "metrics": "metric",
    "parameter": "param",
    "parameters": "param",
    "param": "param",
    "params": "param",
    "tag": "tag",
    "tags": "tag",
    "attribute": "attribute",
    "attributes": "attribute",
    "attr": "attribute",
    "run": "attribute",
    "dataset": "dataset",
    "datasets": "dataset",
}
_NUMERIC_ATTRIBUTES = {"start_time", "end_time", "created", "Created"}
_STRING_ATTRIBUTES = {"run_id", "run_name", "user_id", "status", "artifact_uri"}
_RUN_NAME_ALIASES = {"run name", "Run name", "Run Name"}
_SEARCH_ATTRIBUTES = _NUMERIC_ATTRIBUTES | _STRING_ATTRIBUTES | _RUN_NAME_ALIASES
_ORDER_ATTRIBUTES = _NUMERIC_ATTRIBUTES | _STRING_ATTRIBUTES
_DATASET_KEYS = {"name", "digest", "context"}

_NUMERIC_OPS = {"=", "!=", ">", ">=", "<", "<="}
_PARAM_TAG_OPS = {"=", "!=", "LIKE", "ILIKE", "IS NULL", "IS NOT NULL"}
_STRING_ATTRIBUTE_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}
_DATASET_OPS = {"=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"}

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'[^']*'(?!')|"[^"]*")
  | (?P<number>-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE]-?\d+)?(?![\w.]))
  | (?P<op>!=|>=|<=|=|>|<)
  | (?P<lparen>\()
  | (?P<rparen>\))
  | (?P<comma>,)
  | (?P<ident>(?:`[^`]+`|[A-Za-z_][A-Za-z0-9_]*)
        (?:\.(?:`[^`]+`|"[^"]+"|[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*))?)
    """,
    re.VERBOSE,
)
_KEYWORDS = {"AND", "IN", "NOT", "LIKE", "ILIKE", "IS", "NULL", "ASC", "DESC", "OR"}


class Unsupported(ValueError):
    """This parser cannot vouch for the expression: ask the server (it has the last word)."""


@dataclass(frozen=True)
class Clause:
    """One ``identifier comparator value`` test, its key translated (created → start_time)."""

    kind: Kind
    key: str
    op: str
    value: Value


@dataclass(frozen=True)
class OrderKey:
    """One ``ORDER BY`` term."""

    kind: Kind
    key: str
    ascending: bool


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise Unsupported(f"cannot read {text[pos:]!r}")
        pos = match.end()
        kind = match.lastgroup or ""
        if kind == "ws":
            continue
        value = match.group()
        if kind == "ident" and value.upper() in _KEYWORDS:
            kind, value = "keyword", value.upper()
        out.append((kind, value))
    return out


def _unquote(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "`\"'":
        return text[1:-1]
    return text


def _identifier(text: str, attributes: set[str]) -> tuple[Kind, str]:
    if text.startswith("`") and text.endswith("`") and "." not in text.strip("`"):
        head, key = "attribute", text[1:-1]
    elif "." in text and not (text.startswith("`") and text.endswith("`")):
        head, key = text.split(".", 1)
        head = _unquote(head)
        key = _unquote(key)
    else:
        head, key = "attribute", _unquote(text)
    kind = _KINDS.get(head)
    if kind is None:
        raise Unsupported(f"unknown entity type {head!r}")
    if kind == "attribute" and key not in attributes:
        raise Unsupported(f"unknown attribute {key!r}")
    if kind == "dataset" and key not in _DATASET_KEYS:
        raise Unsupported(f"unknown dataset key {key!r}")
    if not key:
        raise Unsupported("empty key")
    return kind, key


def _translate(kind: Kind, key: str) -> str:
    if kind != "attribute":
        return key
    if key in ("created", "Created"):
        return "start_time"
    if key in _RUN_NAME_ALIASES:
        return "run_name"
    return key


def _number(text: str) -> float | int:
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


def _clause(tokens: list[tuple[str, str]]) -> Clause:
    if not tokens or tokens[0][0] != "ident":
        raise Unsupported("a clause must start with an identifier")
    kind, key = _identifier(tokens[0][1], _SEARCH_ATTRIBUTES)
    rest = tokens[1:]
    words = [v for _, v in rest]
    value: Value
    if words in (["IS", "NULL"], ["IS", "NOT", "NULL"]):
        if kind not in ("param", "tag"):
            raise Unsupported("IS NULL applies to params and tags only")
        return Clause(kind, key, " ".join([*words[:-1], "NULL"]), None)
    if len(rest) >= 3 and rest[0][0] == "keyword" and rest[0][1] in ("IN", "NOT"):
        op = "NOT IN" if rest[0][1] == "NOT" else "IN"
        inner = rest[2:] if op == "NOT IN" else rest[1:]
        if op == "NOT IN" and rest[1] != ("keyword", "IN"):
            raise Unsupported("expected NOT IN")
        value = _string_list(inner)
    elif len(rest) == 2:
        (op_kind, op), (value_kind, raw) = rest
        if op_kind == "keyword" and op in ("LIKE", "ILIKE"):
            pass
        elif op_kind != "op":
            raise Unsupported(f"unknown comparator {op!r}")
        if value_kind == "number":
            value = _number(raw)
        elif value_kind == "string":
            value = raw[1:-1]
        else:
            raise Unsupported(f"unreadable value {raw!r}")
    else:
        raise Unsupported("expected: identifier comparator value")
    return _checked(kind, _translate(kind, key), key, op, value, rest)


def _string_list(tokens: list[tuple[str, str]]) -> tuple[str, ...]:
    if len(tokens) < 3 or tokens[0][0] != "lparen" or tokens[-1][0] != "rparen":
        raise Unsupported("expected a parenthesised list")
    items = tokens[1:-1]
    values: list[str] = []
    for i, (kind, raw) in enumerate(items):
        if i % 2 == 0:
            if kind != "string" or not raw.startswith("'"):
                raise Unsupported("list items must be single-quoted strings")
            values.append(raw[1:-1])
        elif kind != "comma":
            raise Unsupported("list items are separated by commas")
    if len(items) % 2 == 0:
        raise Unsupported("a list cannot end with a comma")
    return tuple(values)


def _checked(
    kind: Kind, key: str, raw_key: str, op: str, value: Value, rest: list[tuple[str, str]]
) -> Clause:
    is_number = isinstance(value, int | float)
    is_string = isinstance(value, str)
    if kind == "metric":
        ok = op in _NUMERIC_OPS and is_number
        value = float(value) if ok and isinstance(value, int | float) else value
    elif kind in ("param", "tag"):
        ok = op in _PARAM_TAG_OPS and is_string
    elif kind == "dataset":
        ok = op in _DATASET_OPS and (is_string if op not in ("IN", "NOT IN") else True)
    elif raw_key in _NUMERIC_ATTRIBUTES:
        ok = op in _NUMERIC_OPS and is_number
    else:
        ok = op in _STRING_ATTRIBUTE_OPS and (
            key == "run_id" if op in ("IN", "NOT IN") else is_string
        )
    if not ok:
        raise Unsupported(f"{kind} {raw_key!r} with {op} {value!r}")
    return Clause(kind, key, op, value)


def parse_filter(text: str | None) -> tuple[Clause, ...]:
    """Parse an AND-ed MLflow run filter; raise Unsupported for anything not vouched for."""
    if not text or not text.strip():
        return ()
    tokens = _tokens(text)
    clauses: list[Clause] = []
    current: list[tuple[str, str]] = []
    for token in [*tokens, ("keyword", "AND")]:
        if token == ("keyword", "AND"):
            clauses.append(_clause(current))
            current = []
        elif token == ("keyword", "OR"):
            raise Unsupported("OR is not part of MLflow's search syntax")
        else:
            current.append(token)
    return tuple(clauses)


def parse_order_by(terms: list[str] | tuple[str, ...] | None) -> tuple[OrderKey, ...]:
    """Parse ``metrics.accuracy DESC``-style terms; raise Unsupported when unsure."""
    keys: list[OrderKey] = []
    seen: set[tuple[Kind, str]] = set()
    for term in terms or ():
        tokens = _tokens(term)
        if not tokens or tokens[0][0] != "ident" or len(tokens) > 2:
            raise Unsupported(f"cannot read order_by {term!r}")
        ascending = True
        if len(tokens) == 2:
            if tokens[1] not in (("keyword", "ASC"), ("keyword", "DESC")):
                raise Unsupported(f"cannot read order_by {term!r}")
            ascending = tokens[1][1] == "ASC"
        kind, key = _identifier(tokens[0][1], _ORDER_ATTRIBUTES)
        if kind == "dataset":
            raise Unsupported("datasets are not orderable")
        key = _translate(kind, key)
        if (kind, key) in seen:
            raise Unsupported(f"order_by names {key!r} twice")
        seen.add((kind, key))
        keys.append(OrderKey(kind, key, ascending))
    return tuple(keys)
