"""The HTTP face of `mlops hooks serve`: Alertmanager's webhook (bearer token) and MLflow's
registry webhooks (HMAC signature), on a small Starlette app run by uvicorn.

Every refusal is a JSON body that names the problem: 401 for a wrong or missing token or
signature (compared in constant time, on bytes, so a non-ASCII header is a 401 and not a
crash), 400 for a body that is not the sender's, 413 past ``MAX_BODY``. Decisions are 200.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from backends.errors import BackendError, InvalidInput
from backends.lifecycle.hooks import Dispatcher, parse_notification

__all__ = ["MAX_BODY", "hooks_app"]

log = logging.getLogger("mlops.hooks")

MAX_BODY = 1 << 20  # 1 MiB: max_alerts 50 of Alertmanager's is a few tens of KB
MlflowHandler = Callable[[bytes, dict[str, str]], dict[str, Any]]


class _TooLarge(Exception):
    pass


async def _body(request: Request) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _TooLarge
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    413: "too_large",
    503: "unavailable",
}


def _error(status: int, message: str) -> JSONResponse:
    """The error body every part of mlops-console answers with (DESIGN.md, "Server API")."""
    body = {"error": {"type": _TYPES.get(status, "error"), "message": message, "details": {}}}
    return JSONResponse(body, status_code=status)


def _bearer_ok(request: Request, token: bytes) -> bool:
    # Raw header bytes: a token with non-ASCII bytes is compared, not decoded (and refused).
    raw = next((v for k, v in request.scope["headers"] if k == b"authorization"), b"")
    scheme, _, given = raw.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token)


def hooks_app(
    dispatcher: Dispatcher, token: str, mlflow_handler: MlflowHandler | None = None
) -> Starlette:
    """The receiver: POST /hooks/alertmanager, POST /hooks/mlflow, GET /health, GET /status."""
    secret = token.encode()

    async def alertmanager(request: Request) -> JSONResponse:
        if not _bearer_ok(request, secret):
            return _error(401, "wrong or missing bearer token (see `mlops hooks serve`)")
        try:
            body = await _body(request)
        except _TooLarge:
            return _error(413, f"body over {MAX_BODY} bytes")
        try:
            note = parse_notification(body)
        except InvalidInput as exc:
            return _error(400, exc.message)
        decisions, warnings = await run_in_threadpool(dispatcher.handle, note)
        return JSONResponse(
            {"decisions": [asdict(d) for d in decisions], "warnings": warnings}, status_code=200
        )

    async def mlflow(request: Request) -> JSONResponse:
        if mlflow_handler is None:
            return _error(404, "MLflow webhooks are not enabled (--mlflow-secret-file)")
        try:
            body = await _body(request)
        except _TooLarge:
            return _error(413, f"body over {MAX_BODY} bytes")
        headers = {
            k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.scope["headers"]
        }
        try:
            answer = await run_in_threadpool(mlflow_handler, body, headers)
        except PermissionError as exc:
            return _error(401, str(exc))
        except InvalidInput as exc:
            return _error(400, exc.message)
        except BackendError as exc:  # the registry is down: MLflow retries later
            return _error(503, exc.message)
        return JSONResponse(answer, status_code=200)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    async def status(request: Request) -> JSONResponse:
        if not _bearer_ok(request, secret):
            return _error(401, "wrong or missing bearer token")
        return JSONResponse(dispatcher.status())

    return Starlette(
        routes=[
            Route("/hooks/alertmanager", alertmanager, methods=["POST"]),
            Route("/hooks/mlflow", mlflow, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
        ]
    )
