"""The runs table's columns: which the run index can order by, and how runs sort in memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from backends.records import RunSummary

KEY_COLUMNS = 4  # metrics and params shown as columns, each

# Columns the run index can order by, and the MLflow order_by attribute of each.
_ORDERABLE = {"name": "attributes.run_name", "status": "attributes.status",
              "started": "attributes.start_time", "id": "attributes.run_id"}  # fmt: skip


def order_term(column: str) -> str | None:
    """The MLflow order_by key of a column, None when MLflow cannot order by it."""
    if column.startswith("m:"):
        return f"metrics.`{column[2:]}`"
    if column.startswith("p:"):
        return f"params.`{column[2:]}`"
    return _ORDERABLE.get(column)


def top_keys(dicts: object, limit: int = KEY_COLUMNS) -> list[str]:
    """The keys most runs have, most common first (ties by name)."""
    counts: dict[str, int] = {}
    for d in dicts:  # type: ignore[attr-defined]
        for key in d:
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts, key=lambda k: (-counts[k], k))[:limit]


def sort_key(run: RunSummary, column: str) -> tuple[int, float, str]:
    """Missing values last; numbers as numbers."""
    value: object
    if column.startswith("m:"):
        value = run.metrics.get(column[2:])
    elif column.startswith("p:"):
        raw = run.params.get(column[2:])
        try:
            value = float(raw) if raw is not None else None
        except ValueError:
            value = raw
    elif column == "duration":
        value = run.duration_seconds
    elif column == "started":
        value = run.start_time.timestamp() if run.start_time else None
    elif column == "id":
        value = run.run_id
    else:
        value = getattr(run, column, None)
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, int | float):
        return (0, float(value), "")
    return (1, 0.0, str(value))
