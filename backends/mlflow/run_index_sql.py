"""The run index's SQL: a run's JSON into rows, rows back into records, and MLflow's filter
and order-by semantics (``backends.mlflow.run_filter``) as WHERE and ORDER BY clauses."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from backends.mlflow.run_filter import Clause, OrderKey
from backends.mlflow.run_mapping import RUN_NAME_TAG, as_float, datasets_of, from_ms
from backends.records import DatasetRef, RunSummary

Json = dict[str, Any]


def run_rows(run: Json) -> tuple[tuple[Any, ...], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(runs row, metric rows, params+tags rows tagged by table) for one run JSON."""
    info = run.get("info") or {}
    data = run.get("data") or {}
    run_id = str(info.get("run_id") or info.get("run_uuid"))
    params = {str(p["key"]): str(p.get("value", "")) for p in data.get("params") or []}
    tags = {str(t["key"]): str(t.get("value", "")) for t in data.get("tags") or []}
    metrics = {str(m["key"]): as_float(m.get("value")) for m in data.get("metrics") or []}
    datasets = datasets_of(run)
    doc = json.dumps(
        {
            "p": params,
            "m": metrics,
            "t": tags,
            "d": [[d.name, d.digest, d.context, d.source_type] for d in datasets],
        },
        separators=(",", ":"),
    )
    start = info.get("start_time")
    end = info.get("end_time")
    row = (
        run_id,
        str(info.get("experiment_id", "")),
        info.get("run_name") or tags.get(RUN_NAME_TAG) or "",
        info.get("status", ""),
        int(start) if start not in (None, "") else None,
        int(end) if end not in (None, "") else None,
        info.get("user_id") or "",
        info.get("artifact_uri") or "",
        info.get("lifecycle_stage") or "active",
        doc,
    )
    metric_rows = [
        (run_id, k, 0.0 if math.isnan(v) else v, int(math.isnan(v))) for k, v in metrics.items()
    ]
    other_rows: list[tuple[Any, ...]] = [("params", run_id, k, v) for k, v in params.items()]
    other_rows += [("tags", run_id, k, v) for k, v in tags.items()]
    other_rows += [("datasets", run_id, d.name, d.digest, d.context) for d in datasets]
    return row, metric_rows, other_rows


def summaries(rows: list[tuple[Any, ...]]) -> list[RunSummary]:
    # One json.loads over all documents costs a third of one call per row (10,000 rows).
    bodies = json.loads("[" + ",".join(r[-1] for r in rows) + "]") if rows else []
    return [_summary(row, body) for row, body in zip(rows, bodies, strict=True)]


def _summary(row: tuple[Any, ...], body: dict[str, Any]) -> RunSummary:
    run_id, experiment_id, name, status, start, end, user, stage, _ = row
    return RunSummary(
        run_id=run_id,
        experiment_id=experiment_id,
        name=name or "",
        status=status or "",
        start_time=from_ms(start),
        end_time=from_ms(end),
        user=user or "",
        params=body["p"],
        metrics=body["m"],
        tags=body["t"],
        datasets=tuple(DatasetRef(n, d, c, s) for n, d, c, s in body["d"]),
        lifecycle_stage=stage,
    )


# ------------------------------------------------------------------ filters and orderings as SQL

_SQL_OPS = {"=": "=", "!=": "!=", ">": ">", ">=": ">=", "<": "<", "<=": "<=", "LIKE": "LIKE"}
_ATTRIBUTE_COLUMNS = {
    "run_id": "r.run_id",
    "user_id": "r.user_id",
    "status": "r.status",
    "artifact_uri": "r.artifact_uri",
    "start_time": "r.start_time",
    "end_time": "r.end_time",
    "run_name": "r.name",
}


def _compare(column: str, op: str, value: Any, args: list[Any]) -> str:
    """``column op value`` as MLflow's SQL store writes it (LIKE case-sensitive, ILIKE not)."""
    if op in ("IN", "NOT IN"):
        args.extend(value)
        marks = ", ".join("?" * len(value))
        return f"{column} {op} ({marks})"
    args.append(value)
    if op == "ILIKE":
        return f"lower({column}) LIKE lower(?)"
    return f"{column} {_SQL_OPS[op]} ?"


def where_clauses(clauses: Iterable[Clause], args: list[Any]) -> list[str]:
    parts: list[str] = []
    for c in clauses:
        if c.kind == "attribute" and c.key == "run_name":
            # MLflow matches run_name against the mlflow.runName tag (older runs lack the column).
            args.append(RUN_NAME_TAG)
            test = _compare("x.value", c.op, c.value, args)
            parts.append(
                f"EXISTS (SELECT 1 FROM tags x WHERE x.run_id = r.run_id AND x.key = ? AND {test})"
            )
        elif c.kind == "attribute":
            parts.append(_compare(_ATTRIBUTE_COLUMNS[c.key], c.op, c.value, args))
        elif c.kind == "dataset":
            column = {"name": "x.name", "digest": "x.digest", "context": "x.context"}[c.key]
            test = _compare(column, c.op, c.value, args)
            parts.append(f"EXISTS (SELECT 1 FROM datasets x WHERE x.run_id = r.run_id AND {test})")
        else:
            table = {"metric": "metrics", "param": "params", "tag": "tags"}[c.kind]
            args.append(c.key)
            exists = f"SELECT 1 FROM {table} x WHERE x.run_id = r.run_id AND x.key = ?"
            if c.op == "IS NULL":
                parts.append(f"NOT EXISTS ({exists})")
                continue
            if c.op == "IS NOT NULL":
                parts.append(f"EXISTS ({exists})")
                continue
            test = _compare("x.value", c.op, c.value, args)
            if c.kind == "metric":
                # MLflow: every comparison with NaN is false, except "!=" which is true.
                test = f"({test} OR x.is_nan = 1)" if c.op == "!=" else f"({test} AND x.is_nan = 0)"
            parts.append(f"EXISTS ({exists} AND {test})")
    return parts


def order_clauses(keys: Iterable[OrderKey], joins: list[str], args: list[Any]) -> list[str]:
    """ORDER BY terms with MLflow's rules: missing values last (then NaN before missing for
    metrics), then ``start_time DESC`` unless ordered by it, then run id."""
    terms: list[str] = []
    by_start = False
    for i, k in enumerate(keys):
        direction = "ASC" if k.ascending else "DESC"
        if k.kind == "attribute":
            column = _ATTRIBUTE_COLUMNS[k.key]
            by_start = by_start or k.key == "start_time"
            terms += [f"CASE WHEN {column} IS NULL THEN 1 ELSE 0 END", f"{column} {direction}"]
            continue
        table = {"metric": "metrics", "param": "params", "tag": "tags"}[k.kind]
        alias = f"o{i}"
        joins.append(f"LEFT JOIN {table} {alias} ON {alias}.run_id = r.run_id AND {alias}.key = ?")
        args.append(k.key)
        if k.kind == "metric":
            rank = (
                f"CASE WHEN {alias}.is_nan = 1 THEN 1 WHEN {alias}.value IS NULL THEN 2 ELSE 0 END"
            )
        else:
            rank = f"CASE WHEN {alias}.value IS NULL THEN 1 ELSE 0 END"
        terms += [rank, f"{alias}.value {direction}"]
    if not by_start:
        terms.append("r.start_time DESC")
    terms.append("r.run_id ASC")
    return terms


# ------------------------------------------------------------------ the index
