"""A tiny stand-in model server for the router's tests (`python -m tests.server.fake_upstream`).

The router is the unit under test, so its upstreams only need to say who answered and to
answer predictably: for a row whose first value is an integer ``i`` the prediction is the
class ``i % 3``; for a float ``x`` it is the number ``x``. Started with ``--skew``, the
answers differ on a known part: the class is ``(i + 1) % 3`` when ``i % 4 == 0`` (a quarter of
the rows 0..4k-1) and every number is ``x + 0.5``. ``--delay`` makes every prediction slow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route


def predict_row(row: Any, skew: bool) -> Any:
    """The fake model: a class for an integer, a number for a float."""
    x = row[0] if isinstance(row, list) else next(iter(row.values()))
    if isinstance(x, int):
        return (x + 1) % 3 if skew and x % 4 == 0 else x % 3
    return float(x) + (0.5 if skew else 0.0)


def create(name: str, skew: bool, delay: float) -> Starlette:
    counts = {"requests": 0, "predictions": 0, "in_progress": 0, "finished": 0}
    made: set[str] = set()  # the request ids of the predictions this one answered

    def answered(payload: dict[str, Any]) -> Response:
        return JSONResponse(payload, headers={"x-upstream": name})

    async def predict(request: Request) -> Response:
        counts["requests"] += 1
        counts["predictions"] += 1
        doc = json.loads(await request.body())
        if request.url.path == "/invocations":
            rows = doc["dataframe_split"]["data"] if "dataframe_split" in doc else doc["inputs"]
        else:
            rows = doc["data"]
        await asyncio.sleep(delay)
        predictions = [predict_row(row, skew) for row in rows]
        made.add(request.headers.get("x-request-id", ""))
        return answered({"predictions": predictions, "model": {"name": "fake", "version": name}})

    async def feedback(request: Request) -> Response:
        """A model server's contract in small: a label is judged only by the server that made
        its prediction (the others have no such request id)."""
        doc = json.loads(await request.body())
        items = doc if isinstance(doc, list) else [doc]
        results = [
            {
                "request_id": item.get("request_id"),
                "index": item.get("index", 0),
                "outcome": "accepted" if item.get("request_id") in made else "not_found",
                "judged_by": name,
            }
            for item in items
        ]
        return answered({"results": results})

    async def slow(request: Request) -> Response:
        counts["requests"] += 1
        counts["in_progress"] += 1
        try:
            await asyncio.sleep(float(request.query_params.get("seconds", "2")))
        finally:
            counts["in_progress"] -= 1
        counts["finished"] += 1
        return answered({"upstream": name})

    async def who(request: Request) -> Response:
        counts["requests"] += 1
        return answered({"upstream": name})

    async def stats(request: Request) -> Response:
        return JSONResponse(counts)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(
            f'# TYPE fake_upstream_info gauge\nfake_upstream_info{{name="{name}"}} 1\n'
        )

    return Starlette(
        routes=[
            Route("/predict", predict, methods=["POST"]),
            Route("/invocations", predict, methods=["POST"]),
            Route("/slow", slow, methods=["GET", "POST"]),
            Route("/stats", stats),
            Route("/metrics", metrics),
            Route("/feedback", feedback, methods=["POST"]),
            Route("/ready", who),
            Route("/who", who, methods=["GET", "POST"]),
        ]
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")  # another loopback address: one "task"
    p.add_argument("--name", required=True)
    p.add_argument("--skew", action="store_true")
    p.add_argument("--delay", type=float, default=0.0)
    args = p.parse_args()
    app = create(args.name, args.skew, args.delay)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=1
    )


if __name__ == "__main__":
    main()
