"""Request bodies → a uniform table (column names + rows), before any schema check.

Accepted shapes (the MLflow scoring protocol plus the seed's `/predict` payload):
``{"dataframe_split": {"columns": [...], "data": [[...]]}}``, ``{"dataframe_records": [{...}]}``,
``{"instances": ...}`` / ``{"inputs": ...}`` (rows as lists or objects, or columns as a dict of
lists), ``{"data": ...}`` (rows as lists or objects), and ``text/csv`` with a header line.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from typing import Any

from server.errors import ClientError, bad_json, bad_payload

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass(frozen=True)
class Table:
    """Rows in the order the client sent them; ``columns`` is None for positional rows."""

    columns: list[str] | None
    rows: list[list[Any]]


def _reject_constant(name: str) -> float:
    # Python's json accepts NaN/Infinity, which are not JSON; refuse them by name.
    raise ValueError(f"{name} is not valid JSON (send null for a missing value)")


def decode_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity literals, bounded nesting, linear in its size.

    Nesting is bounded by the C parser's own recursion guard (a RecursionError, refused as
    400), not by a scan of every character in Python.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_json(f"body is not UTF-8: {exc.reason} at byte {exc.start}") from exc
    if not text.strip():
        raise bad_json("body is empty; send a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise bad_json("JSON nested too deeply") from None
    except ValueError as exc:  # also an integer of more digits than Python converts
        raise bad_json(f"body is not valid JSON: {_short_text(str(exc))}") from exc


def _short_text(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_predict(doc: Any) -> Table:
    """The `/predict` payload: ``{"data": [[...], ...]}`` or ``{"data": [{...}, ...]}``."""
    if not isinstance(doc, dict):
        raise bad_payload('expected a JSON object like {"data": [[...], ...]}')
    if "data" not in doc:
        raise bad_payload('missing key "data"', keys=sorted(map(str, doc))[:20])
    return _rows_or_records(doc["data"], "data")


def parse_invocations(doc: Any) -> Table:
    """The MLflow scoring protocol's JSON formats."""
    if not isinstance(doc, dict):
        raise bad_payload(
            f"expected a JSON object with one of the keys {', '.join(MLFLOW_FORMATS)}"
        )
    present = [k for k in MLFLOW_FORMATS if k in doc]
    if len(present) != 1:
        raise bad_payload(
            f"expected exactly one of the keys {', '.join(MLFLOW_FORMATS)}",
            received=sorted(map(str, doc))[:20],
        )
    key = present[0]
    value = doc[key]
    if key == "dataframe_split":
        return _split(value)
    if key == "dataframe_records":
        return _rows_or_records(value, key, allow_lists=False)
    if isinstance(value, dict):
        return _columns(value, key)
    return _rows_or_records(value, key)


def parse_csv(body: bytes) -> Table:
    """A CSV body with a header line; values stay strings until the schema converts them."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad_payload(f"CSV body is not UTF-8: {exc.reason}") from exc
    try:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        rows = [row for row in reader if row]
    except csv.Error as exc:
        raise bad_payload(f"body is not valid CSV: {exc}") from exc
    if not header:
        raise bad_payload("CSV body has no header line")
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ClientError(
                422,
                "schema_mismatch",
                f"CSV row {i} has {len(row)} values, the header names {len(header)}",
                {"row": i},
            )
    return Table([h.strip() for h in header], [[_csv_value(v) for v in row] for row in rows])


def _csv_value(text: str) -> Any:
    stripped = text.strip()
    if stripped == "":
        return None
    try:
        number = float(stripped)  # too many digits gives inf: the schema check names it
    except ValueError:
        return text
    if stripped.lower() in ("nan", "inf", "-inf", "infinity", "-infinity") or not math.isfinite(
        number
    ):
        return number
    if stripped.lstrip("+-").isdigit():
        try:
            return int(stripped)
        except ValueError:  # more digits than Python converts: out of any column's range
            return number
    return number


def _split(value: Any) -> Table:
    if not isinstance(value, dict):
        raise bad_payload('"dataframe_split" must be an object with "columns" and "data"')
    columns = value.get("columns")
    data = value.get("data")
    if not isinstance(data, list):
        raise bad_payload('"dataframe_split" needs "data": a list of rows')
    if columns is not None and not (
        isinstance(columns, list) and all(isinstance(c, str) for c in columns)
    ):
        raise bad_payload('"dataframe_split.columns" must be a list of strings')
    table = _rows_or_records(data, "dataframe_split.data", allow_records=False)
    if columns is not None:
        for i, row in enumerate(table.rows):
            if len(row) != len(columns):
                raise ClientError(
                    422,
                    "schema_mismatch",
                    f"dataframe_split row {i} has {len(row)} values for {len(columns)} columns",
                    {"row": i},
                )
    return Table(columns, table.rows)


def _columns(value: dict[str, Any], key: str) -> Table:
    names = [str(k) for k in value]
    cols = list(value.values())
    if not all(isinstance(c, list) for c in cols):
        raise bad_payload(f'"{key}" as an object must map each column to a list of values')
    lengths = {len(c) for c in cols}
    if len(lengths) > 1:
        raise bad_payload(f'the columns of "{key}" have different lengths', lengths=sorted(lengths))
    return Table(names, [list(r) for r in zip(*cols, strict=True)])


def _rows_or_records(
    value: Any, key: str, *, allow_lists: bool = True, allow_records: bool = True
) -> Table:
    if not isinstance(value, list):
        raise bad_payload(f'"{key}" must be a list of rows')
    if not value:
        raise bad_payload(f'"{key}" is empty; send at least one row')
    first = value[0]
    if isinstance(first, dict) and allow_records:
        columns = [str(k) for k in first]
        rows = []
        for i, rec in enumerate(value):
            if not isinstance(rec, dict):
                raise bad_payload(f'row {i} of "{key}" is not an object like row 0', row=i)
            if rec.keys() != first.keys():
                missing = sorted(set(first) - set(rec))
                extra = sorted(set(rec) - set(first))
                raise ClientError(
                    422,
                    "schema_mismatch",
                    f"row {i} has different columns from row 0"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; unexpected {extra}" if extra else ""),
                    {"row": i, "missing": missing, "unexpected": extra},
                )
            rows.append([rec[c] for c in columns])
        return Table(columns, rows)
    if isinstance(first, list) and allow_lists:
        for i, row in enumerate(value):
            if not isinstance(row, list):
                raise bad_payload(f'row {i} of "{key}" is not a list like row 0', row=i)
        return Table(None, value)
    if isinstance(first, int | float | str | bool) or first is None:
        raise bad_payload(f'"{key}" must be a list of rows (lists or objects), not of scalars')
    raise bad_payload(f'row 0 of "{key}" must be a list or an object')
