"""The shape of ``POST /feedback``: what a body may be, and the per-item report it gets.

A body is one label ``{"request_id", "index"?, "truth"}`` or a list of them (delayed labels in
bulk). A list is always answered 200 with one result per item, in order — an unknown id or a
wrong type fails that item only, as in Seldon's and SageMaker's ground-truth merges. A single
label that is not taken is answered as an error of its own: 404 for an unknown prediction,
422 for an invalid label, with the same result in ``details``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.errors import ClientError, bad_payload
from server.feedback import ACCEPTED, INVALID, NOT_FOUND, RELABELLED

_LABEL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["request_id", "truth"],
    "properties": {
        "request_id": {"type": "string"},
        "index": {"type": "integer", "minimum": 0, "default": 0},
        "truth": {},
    },
}
FEEDBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        _LABEL_SCHEMA,
                        {"type": "array", "minItems": 1, "items": _LABEL_SCHEMA},
                    ]
                }
            }
        },
    }
}


def feedback_items(doc: Any, max_items: int) -> tuple[list[Any], bool]:
    """The labels of a decoded body, and whether it was a single one."""
    if isinstance(doc, dict):
        return [doc], True
    if not isinstance(doc, list):
        raise bad_payload('send {"request_id": ..., "index": ..., "truth": ...} or a list of them')
    if not doc:
        raise bad_payload("the list of labels is empty")
    if len(doc) > max_items:
        raise ClientError(
            413,
            "too_many_rows",
            f"{len(doc)} labels exceed the limit of {max_items} per request",
            {"limit": max_items},
        )
    return doc, False


@dataclass(frozen=True)
class FeedbackReport:
    status: int
    body: dict[str, Any]

    @classmethod
    def of(
        cls, results: list[dict[str, Any]], counts: dict[str, int], single: bool
    ) -> FeedbackReport:
        summary: dict[str, Any] = {"results": results, **counts}
        if single and results[0]["outcome"] in (NOT_FOUND, INVALID):
            outcome = results[0]["outcome"]
            status, kind = (404, "not_found") if outcome == NOT_FOUND else (422, "invalid_label")
            err = ClientError(status, kind, results[0].get("message", outcome), summary)
            return cls(status, err.body())
        assert set(counts) == {ACCEPTED, RELABELLED, NOT_FOUND, INVALID}
        return cls(200, summary)
