"""Labels back through the router: each label of ``POST /feedback`` goes to the model server
that answered the prediction it judges.

A model server judges a label only for the request ids it answered itself (``server.feedback``);
any other answers it as not found. So the router remembers which upstream answered each of the
latest canary predictions (``AnsweredBy``, by the ``X-Request-Id`` it forwarded; an id it does
not know was the stable's), and a ``POST /feedback`` is routed by it: a single label, or a list
whose labels all go to one upstream, is forwarded there as it came; a list that spans both is
split (``split``), each part sent to its upstream, and the per-item reports put back together
in the client's order (``merged``) into the answer a model server gives a list: 200, one
result per item, the outcome counts beside them. An item whose part was not answered — its
upstream unreachable, timed out, or answering something other than a report — is reported as
``"outcome": "failed"`` with the reason (and a ``failed`` count); when no part was answered the
whole list is refused with the first part's error status, the report in ``details``, as a model
server refuses a single label.

An id is routed to the URL that answered it while that URL still serves (a promoted canary is
the stable now, at the same URL); once it serves no more (the canary removed or replaced, its
container stopped) the label goes to the stable, which says not found.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from server.errors import ClientError
from server.feedback import ACCEPTED, INVALID, NOT_FOUND, RELABELLED
from server.payload import decode_json
from server.routing import RoutingTable

__all__ = ["FAILED", "AnsweredBy", "Failure", "Part", "merged", "part_answer", "split"]

FAILED = "failed"  # the router's outcome for an item no upstream judged; never a server's
_OUTCOMES = (ACCEPTED, RELABELLED, NOT_FOUND, INVALID)


class AnsweredBy:
    """The upstream URL that answered each of the latest ``capacity`` remembered requests (the
    canary's): least recently answered forgotten first. Touched by the event loop only."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._urls: OrderedDict[str, str] = OrderedDict()

    def remember(self, request_id: str, url: str) -> None:
        if self.capacity <= 0:
            return
        urls = self._urls
        urls[request_id] = url
        urls.move_to_end(request_id)  # a reused id: its newest answer is the one judged
        if len(urls) > self.capacity:
            urls.popitem(last=False)

    def get(self, request_id: str) -> str | None:
        return self._urls.get(request_id)

    def __len__(self) -> int:
        return len(self._urls)


@dataclass(frozen=True)
class Part:
    """The labels (their places in the client's list) that go to the upstream at ``url``, and
    the body that carries them there."""

    url: str
    positions: list[int]
    body: bytes
    task: str | None = None  # the service task (base URL) that answered them, when known


@dataclass(frozen=True)
class Failure:
    """Why a part got no report: the error a client would have had for it alone."""

    status: int
    kind: str
    message: str


def split(
    body: bytes, table: RoutingTable, answered: AnsweredBy, tasks: AnsweredBy | None = None
) -> tuple[list[Any], list[Part]]:
    """The client's labels and the parts they go in, the stable's first. A body that is not
    labels to route (not JSON, not a list of them: the stable's 4xx to give), or whose labels
    all go to one place, is one part, as it came; ``positions`` are then not used. ``tasks``:
    which of a service's tasks answered each remembered request (a task judges a label only
    for the predictions it made); a label whose task is not known goes to any of them."""
    stable = table.stable.url
    try:
        doc = decode_json(body)
    except ClientError:
        return [], [Part(stable, [], body)]
    if isinstance(doc, dict):
        url, task = _target(doc, table, answered, tasks)
        return [doc], [Part(url, [0], body, task)]
    if not isinstance(doc, list) or not doc:
        return [], [Part(stable, [], body)]
    places: dict[tuple[str, str | None], list[int]] = {(stable, None): []}
    for i, item in enumerate(doc):
        places.setdefault(_target(item, table, answered, tasks), []).append(i)
    parts = [(where, positions) for where, positions in places.items() if positions]
    if len(parts) == 1:
        (url, task), positions = parts[0]
        return doc, [Part(url, positions, body, task)]
    return doc, [
        Part(url, positions, _encode([doc[i] for i in positions]), task)
        for (url, task), positions in parts
    ]


def _target(
    item: Any, table: RoutingTable, answered: AnsweredBy, tasks: AnsweredBy | None
) -> tuple[str, str | None]:
    rid = item.get("request_id") if isinstance(item, dict) else None
    url = answered.get(rid) if isinstance(rid, str) else None
    upstream = table.at(url)[1].url
    task = tasks.get(rid) if tasks is not None and isinstance(rid, str) else None
    return upstream, task


def part_answer(status: int, data: bytes, items: int, who: str) -> list[dict[str, Any]] | Failure:
    """A part's per-item results from its upstream's answer, or why there are none."""
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    results = doc.get("results") if isinstance(doc, dict) else None
    if (
        status == 200
        and isinstance(results, list)
        and len(results) == items
        and all(isinstance(r, dict) and isinstance(r.get("outcome"), str) for r in results)
    ):
        return results
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict) and status >= 400:
        kind = str(error.get("type") or "upstream_error")
        return Failure(status, kind, f"{who} answered {status}: {error.get('message', kind)}")
    return Failure(502, "upstream_error", f"{who} answered {status} without a per-item report")


def merged(
    items: list[Any], parts: list[Part], answers: list[list[dict[str, Any]] | Failure]
) -> tuple[int, dict[str, Any]]:
    """The status and body for the whole list: every part's results in the client's order."""
    results: list[dict[str, Any]] = [{} for _ in items]
    failures: list[Failure] = []
    for part, answer in zip(parts, answers, strict=True):
        if isinstance(answer, Failure):
            failures.append(answer)
            for i in part.positions:
                results[i] = _failed(items[i], answer.message)
        else:
            for i, result in zip(part.positions, answer, strict=True):
                results[i] = result
    counts = dict.fromkeys(_OUTCOMES, 0)
    for result in results:
        counts[result["outcome"]] = counts.get(result["outcome"], 0) + 1
    summary: dict[str, Any] = {"results": results, **counts}
    if len(failures) == len(parts):  # nothing was judged: refused as a whole, as one label is
        first = failures[0]
        return first.status, ClientError(first.status, first.kind, first.message, summary).body()
    return 200, summary


def _failed(item: Any, message: str) -> dict[str, Any]:
    # The model server's echo rules: each field only as the type it must be.
    rid = item.get("request_id") if isinstance(item, dict) else None
    index = item.get("index", 0) if isinstance(item, dict) else None
    row = isinstance(index, int) and not isinstance(index, bool) and 0 <= index < 2**63
    return {
        "request_id": rid if isinstance(rid, str) else None,
        "index": index if row else (0 if index is None else None),
        "outcome": FAILED,
        "message": message,
    }


def _encode(items: list[Any]) -> bytes:
    return json.dumps(items, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
