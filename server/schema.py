"""Check a request table against the model's input signature, naming the row and column at fault.

The signature arrives as plain ``ColumnSpec``s (converted from MLflow's Schema when the model is
loaded), so this module stays importable and testable without mlflow.
"""

from __future__ import annotations

import math
import reprlib
import struct
from dataclasses import dataclass
from typing import Any

from server.errors import ClientError
from server.payload import Table

FLOAT_TYPES = frozenset({"double", "float"})
INT_TYPES = frozenset({"long", "integer"})
INT_RANGE = {"long": (-(2**63), 2**63 - 1), "integer": (-(2**31), 2**31 - 1)}
PANDAS_DTYPES = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
    "boolean": "bool",
    "string": "object",
}


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str  # MLflow DataType name: double, float, long, integer, boolean, string, ...
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    columns: tuple[ColumnSpec, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def describe(self) -> list[dict[str, Any]]:
        return [{"name": c.name, "type": c.type, "required": c.required} for c in self.columns]


def _mismatch(message: str, **details: Any) -> ClientError:
    return ClientError(422, "schema_mismatch", message, details)


def conform(table: Table, schema: InputSchema | None) -> tuple[list[str] | None, list[list[Any]]]:
    """Rows reordered to the schema's columns, with each value checked against its type."""
    if schema is None:
        width = len(table.rows[0])
        for i, row in enumerate(table.rows):
            if len(row) != width:
                raise _mismatch(f"row {i} has {len(row)} values, row 0 has {width}", row=i)
        return table.columns, table.rows

    specs = schema.columns
    if table.columns is None:
        rows = table.rows
        for i, row in enumerate(rows):
            if len(row) != len(specs):
                raise _mismatch(
                    f"row {i} has {len(row)} values; the model expects {len(specs)} "
                    f"({', '.join(schema.names)})",
                    row=i,
                    expected=schema.names,
                )
    else:
        rows = _reorder(table, schema)
    for i, row in enumerate(rows):
        for value, spec in zip(row, specs, strict=True):
            _check_value(value, spec, i)
    return schema.names, rows


def _reorder(table: Table, schema: InputSchema) -> list[list[Any]]:
    # Linear in the number of columns sent (a client may send tens of thousands).
    assert table.columns is not None
    given = table.columns
    position: dict[str, int] = {}
    dupes: set[str] = set()
    for j, name in enumerate(given):
        if name in position:
            dupes.add(name)
        else:
            position[name] = j
    if dupes:
        shown = sorted(dupes)[:20]
        raise _mismatch(
            f"duplicate columns: {', '.join(_name(c) for c in shown)}"
            + (f" (and {len(dupes) - 20} more)" if len(dupes) > 20 else ""),
            duplicates=shown,
        )
    wanted = schema.names
    known = set(wanted)
    missing = [c.name for c in schema.columns if c.required and c.name not in position]
    unexpected = [c for c in given if c not in known]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing columns: {', '.join(missing)}")
        if unexpected:
            shown = unexpected[:20]
            more = f" (and {len(unexpected) - 20} more)" if len(unexpected) > 20 else ""
            parts.append(f"unexpected columns: {', '.join(_name(c) for c in shown)}{more}")
        raise _mismatch(
            "; ".join(parts) + f" (the model expects {', '.join(wanted)})",
            missing=missing,
            unexpected=unexpected[:20],
            expected=wanted,
        )
    if given == wanted:
        return table.rows
    index = [position.get(name, -1) for name in wanted]
    return [[row[j] if j >= 0 else None for j in index] for row in table.rows]


def _check_value(value: Any, spec: ColumnSpec, row: int) -> None:
    kind = spec.type
    if value is None or (isinstance(value, float) and math.isnan(value)):
        if spec.required:
            raise _mismatch(
                f"row {row}, column '{spec.name}': missing value (the column is required)",
                row=row,
                column=spec.name,
            )
        return
    if kind in FLOAT_TYPES:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not _finite_float(value, kind):
            raise _mismatch(
                f"row {row}, column '{spec.name}': {_short(value)} is not a finite number "
                f"a {kind} column can hold",
                row=row,
                column=spec.name,
            )
    elif kind in INT_TYPES:
        ok = (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
        low, high = INT_RANGE[kind]
        if ok and not low <= value <= high:
            raise _mismatch(
                f"row {row}, column '{spec.name}': {_short(value)} is out of the range of a "
                f"{kind} column",
                row=row,
                column=spec.name,
            )
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind == "string":
        ok = isinstance(value, str)
    else:
        ok = True  # binary, datetime, arrays: left to the model's own enforcement
    if not ok:
        raise _mismatch(
            f"row {row}, column '{spec.name}': expected {kind}, got {_json_type(value)} "
            f"{_short(value)}",
            row=row,
            column=spec.name,
            expected=kind,
        )


def _finite_float(value: int | float, kind: str = "double") -> bool:
    """Whether ``value`` is a finite number of the column's type: a float (32-bit) column
    holds up to ~3.4e38, and a larger value would reach the model as infinity."""
    try:
        if kind == "float":
            struct.pack("<f", float(value))  # rounds as the cast to float32 does, or overflows
        return math.isfinite(float(value))
    except OverflowError:  # an integer beyond any float, or a number beyond float32's range
        return False


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlong = 2, 40, 40, 40
_REPR.maxlist = _REPR.maxdict = 4


def _name(column: str) -> str:
    return column if len(column) <= 40 else column[:37] + "..."


def _short(value: Any) -> str:
    """A value for a message: bounded in depth and length, whatever the client sent."""
    text = _REPR.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
