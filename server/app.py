"""The FastAPI model server: routes, the error contract and request metrics (DESIGN.md)."""

from __future__ import annotations

import asyncio
import copy
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from server.addresses import is_loopback
from server.batcher import BatchTimeout, Overloaded
from server.config import ServerConfig
from server.errors import ClientError
from server.feedback import ACCEPTED, INVALID, NOT_FOUND, RELABELLED, Verdict
from server.feedback_report import FEEDBACK_BODY as _FEEDBACK_BODY
from server.feedback_report import FeedbackReport, feedback_items
from server.metrics import ServerMetrics
from server.payload import Table, decode_json, parse_csv, parse_invocations, parse_predict
from server.request_ids import HEADER, request_id
from server.runtime import Runtime, Slot
from server.schema import InputSchema, conform

log = logging.getLogger("server")
Rows = tuple[Table, list[list[Any]]]

_ROWS_SCHEMA: dict[str, Any] = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [{"type": "array"}, {"type": "object"}]},
}
_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
        }
    },
}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    }
    for code, text in [
        (400, "Malformed JSON or payload"),
        (413, "Body larger than the limit"),
        (415, "Unsupported content type"),
        (422, "Input does not match the model signature"),
        (503, "Model not loaded, or overloaded"),
    ]
}
# JSON bodies up to this size (a few rows: the single-row requests of online serving) are parsed
# on the event loop, in well under a millisecond even for the densest shapes; larger ones and
# CSV (slower per byte) in a worker thread, so that a body at the size limit never stalls
# /health.
INLINE_PARSE_BYTES = 1024
_FEEDBACK_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_ERROR_RESPONSES,
    404: {
        "description": "A single label for an unknown request or row",
        "content": {"application/json": {"schema": _ERROR_SCHEMA}},
    },
}
_PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["data"],
                    "properties": {"data": _ROWS_SCHEMA},
                }
            }
        },
    }
}
_INVOCATIONS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "dataframe_split": {
                            "type": "object",
                            "properties": {
                                "columns": {"type": "array", "items": {"type": "string"}},
                                "data": {"type": "array", "items": {"type": "array"}},
                            },
                        },
                        "dataframe_records": {"type": "array", "items": {"type": "object"}},
                        "instances": _ROWS_SCHEMA,
                        "inputs": _ROWS_SCHEMA,
                    },
                }
            },
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


def create_app(config: ServerConfig) -> FastAPI:
    """The model server app for one model reference."""
    metrics = ServerMetrics()
    runtime = Runtime(config, metrics)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()  # uvicorn has drained in-flight requests by now

    app = FastAPI(
        title="mlops-console model server",
        version="1",
        lifespan=lifespan,
        description="Serves one MLflow model: MLflow scoring protocol, metrics, drift.",
        docs_url=None,  # below: for loopback clients only, unless MLOPS_PUBLIC_DOCS
        redoc_url=None,
    )
    app.state.runtime = runtime

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        """The interactive API page (loopback clients only unless MLOPS_PUBLIC_DOCS=1)."""
        if not config.public_docs and not is_loopback(
            request.client.host if request.client else ""
        ):
            err = ClientError(404, "not_found", "/docs answers loopback clients only")
            return JSONResponse(err.body(), status_code=404)
        from fastapi.openapi.docs import get_swagger_ui_html

        return get_swagger_ui_html(openapi_url="/openapi.json", title="mlops model server")

    base_openapi = app.openapi

    def openapi_for_model() -> dict[str, Any]:
        # Describe the loaded model's own columns, so clients (and fuzzers) see the real contract.
        doc = base_openapi()
        slot = runtime.slot
        if slot is not None and slot.model.schema is not None:
            doc = _with_row_schema(doc, slot.model.schema)
        return doc

    app.openapi = openapi_for_model  # type: ignore[method-assign]

    def record(endpoint: str, status: int, started: float) -> None:
        code = str(status)
        metrics.request_duration.labels(endpoint=endpoint, status=code).observe(
            time.perf_counter() - started
        )
        metrics.requests.labels(endpoint=endpoint, status=code).inc()

    # Every answer a scoring route gives counted from 0, before the first: Prometheus'
    # increase() takes a series' first sample as its start, so a first 500 that created its
    # series would never count (a canary's errors read as none).
    for endpoint in ("predict", "invocations"):
        for code in ("200", "500", "503"):
            metrics.requests.labels(endpoint=endpoint, status=code)

    in_flight = 0
    metrics.requests_in_flight.set_function(lambda: in_flight)

    def parse(body: bytes, mime: str, parse_json: Callable[[Any], Table], slot: Slot) -> Rows:
        # In a worker thread, but for small JSON bodies (INLINE_PARSE_BYTES): parsing and
        # checking a body at the size limit is milliseconds to a few hundred of them of Python,
        # which must never stall /health on the event loop.
        table = parse_csv(body) if mime == "text/csv" else parse_json(decode_json(body))
        if len(table.rows) > config.max_rows:
            raise ClientError(
                413,
                "too_many_rows",
                f"{len(table.rows)} rows exceed the limit of {config.max_rows} per request",
                {"limit": config.max_rows},
            )
        return table, conform(table, slot.model.schema)[1]

    async def score(
        request: Request, endpoint: str, parse_json: Callable[[Any], Table], mlflow_compat: bool
    ) -> Response:
        nonlocal in_flight
        started = time.perf_counter()
        status = 200
        admitted = False
        rid = request_id(request.headers.get(HEADER))
        traced = {"X-Request-Id": rid}
        try:
            if in_flight >= config.max_in_flight:
                raise ClientError(
                    503,
                    "overloaded",
                    f"{in_flight} requests in flight (the limit is {config.max_in_flight})",
                    retry_after=1,
                )
            in_flight += 1
            admitted = True
            if runtime.slot is None:
                raise ClientError(503, "not_ready", _not_ready_message(runtime), retry_after=2)
            mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if mime not in ("application/json", "text/csv") or (
                mime == "text/csv" and not mlflow_compat
            ):
                accepted = "application/json or text/csv" if mlflow_compat else "application/json"
                raise ClientError(
                    415,
                    "unsupported_media_type",
                    f"content type {mime or '(none)'!r} is not supported; send {accepted}",
                    close=await _refuse_unread(request, config),
                )
            body = await _read_body(request, config)
            slot = runtime.slot
            assert slot is not None
            if len(body) <= INLINE_PARSE_BYTES and mime == "application/json":
                # A few rows parse in microseconds: a hop to a worker thread and back would
                # cost more than the parse (and, under load, a wait for the GIL on both sides).
                table, rows = parse(body, mime, parse_json, slot)
            else:
                table, rows = await asyncio.to_thread(parse, body, mime, parse_json, slot)
            if runtime.slot is not slot:  # reloaded meanwhile: check against the new schema
                slot = runtime.slot
                assert slot is not None
                rows = conform(table, slot.model.schema)[1]
            # No await between taking the slot and submit: a reload that swapped models cannot
            # hand us a batcher that is closing.
            try:
                scored = await slot.batcher.submit(rows)
            except (ValueError, TypeError, OverflowError) as exc:
                # Validated input the model still refuses: the input's fault, said as such.
                raise ClientError(
                    422, "model_rejected_input", f"the model rejected the input: {exc}"
                ) from exc
            predictions = [p for p, _ in scored]
            runtime.answered(rid, slot.model, rows, predictions, [q for _, q in scored])
            payload: dict[str, Any] = {"predictions": predictions}
            if not mlflow_compat:  # MLflow's answer keeps MLflow's shape: the header says it
                i = slot.model.identity
                payload["request_id"] = rid
                payload["model"] = {"name": i.name, "version": i.version}
            return JSONResponse(payload, headers=traced)
        except ClientError as exc:
            status = exc.status
            metrics.prediction_errors.labels(endpoint=endpoint, type=exc.kind).inc()
            return JSONResponse(
                exc.body(mlflow_compatible=mlflow_compat),
                status_code=status,
                headers={**exc.headers, **traced},
            )
        except ClientDisconnect:
            # The client went away mid-body: its doing, not the server's (499, as nginx says).
            status = 499
            metrics.prediction_errors.labels(endpoint=endpoint, type="client_disconnected").inc()
            return Response(status_code=499, headers=traced)
        except (Overloaded, BatchTimeout) as exc:
            status = 503
            metrics.prediction_errors.labels(endpoint=endpoint, type="overloaded").inc()
            err = ClientError(503, "overloaded", str(exc))
            return JSONResponse(
                err.body(mlflow_compatible=mlflow_compat),
                status_code=503,
                headers={"Retry-After": "1", **traced},
            )
        except Exception as exc:
            status = 500
            log.exception("prediction failed")
            metrics.prediction_errors.labels(endpoint=endpoint, type="model_error").inc()
            fault: dict[str, Any] = {
                "error": {"type": "model_error", "message": str(exc), "details": {}}
            }
            if mlflow_compat:
                fault.update(error_code="INTERNAL_ERROR", message=str(exc))
            return JSONResponse(fault, status_code=500, headers=traced)
        finally:
            if admitted:
                in_flight -= 1
            record(endpoint, status, started)

    @app.post("/predict", openapi_extra=_PREDICT_BODY, responses=_ERROR_RESPONSES)
    async def predict(request: Request) -> Response:
        """Rows as lists or objects under "data"; answers predictions and the model version."""
        return await score(request, "predict", parse_predict, mlflow_compat=False)

    @app.post("/invocations", openapi_extra=_INVOCATIONS_BODY, responses=_ERROR_RESPONSES)
    async def invocations(request: Request) -> Response:
        """The MLflow scoring protocol, answering as `mlflow models serve` does."""
        return await score(request, "invocations", parse_invocations, mlflow_compat=True)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", responses={503: _ERROR_RESPONSES[503]})
    async def ready() -> Response:
        """200 once the model is loaded, 503 before (or when loading failed)."""
        if runtime.slot is None:
            err = ClientError(503, "not_ready", _not_ready_message(runtime))
            return JSONResponse(err.body(), status_code=503)
        body: dict[str, Any] = {"status": "ready", "version": runtime.slot.model.identity.version}
        if runtime.log is not None:  # degraded logging never makes a server unready
            body["prediction_log"] = runtime.log.status
        return JSONResponse(body)

    @app.post("/feedback", openapi_extra=_FEEDBACK_BODY, responses=_FEEDBACK_RESPONSES)
    async def feedback(request: Request) -> Response:
        """Labels for earlier predictions, by request id and row index; a report per item."""
        if runtime.slot is None:
            err = ClientError(503, "not_ready", _not_ready_message(runtime), retry_after=2)
            return JSONResponse(err.body(), status_code=503, headers=err.headers)
        mime = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime != "application/json":
            err = ClientError(
                415,
                "unsupported_media_type",
                f"content type {mime or '(none)'!r} is not supported; send application/json",
                close=await _refuse_unread(request, config),
            )
            return JSONResponse(err.body(), status_code=415, headers=err.headers)
        try:
            body = await _read_body(request, config)
            async with feedback_turn:  # one body judged at a time: predictions keep the pool
                report = await asyncio.to_thread(judge_feedback, body)
        except ClientError as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        except ClientDisconnect:
            return Response(status_code=499)
        return JSONResponse(report.body, status_code=report.status)

    feedback_turn = asyncio.Semaphore(1)

    def judge_feedback(body: bytes) -> FeedbackReport:
        items, single = feedback_items(decode_json(body), config.max_rows)
        results: list[dict[str, Any]] = []
        taken: list[tuple[str, int, Any]] = []
        counts = dict.fromkeys((ACCEPTED, RELABELLED, NOT_FOUND, INVALID), 0)
        for item in items:
            if not isinstance(item, dict):
                verdict = Verdict(INVALID, "an item must be an object with request_id and truth")
                rid, index, truth = None, None, None
            elif "truth" not in item:
                rid, index, truth = item.get("request_id"), item.get("index", 0), None
                verdict = Verdict(INVALID, "the item has no truth")
            else:
                rid, index, truth = item.get("request_id"), item.get("index", 0), item["truth"]
                verdict = runtime.outcomes.judge(rid, index, truth)
            counts[verdict.outcome] += 1
            result: dict[str, Any] = {  # echoed only as the types they must be
                "request_id": rid if isinstance(rid, str) else None,
                "index": index if _row_number(index) else (0 if index is None else None),
                "outcome": verdict.outcome,
            }
            if verdict.message:
                result["message"] = verdict.message
            results.append(result)
            if verdict.outcome in (ACCEPTED, RELABELLED):
                taken.append((str(rid), int(index or 0), truth))
        for outcome, n in counts.items():
            if n:
                metrics.feedback.labels(outcome=outcome).inc(n)
        if taken and runtime.log is not None:
            runtime.log.offer_feedback(taken)
        return FeedbackReport.of(results, counts, single)

    @app.get("/version", responses={503: _ERROR_RESPONSES[503]})
    async def version() -> Response:
        """Model name, version, run id, alias, signature and drift status."""
        if runtime.slot is None:
            err = ClientError(503, "not_ready", _not_ready_message(runtime))
            return JSONResponse(err.body(), status_code=503)
        return JSONResponse(runtime.slot.model.describe())

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus exposition."""
        runtime.refresh_quality()
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", responses={401: {}, 403: {}, 503: {}})
    async def admin_reload(request: Request) -> Response:
        """Re-resolve the reference (e.g. an alias) and swap models atomically."""
        _authorize(request, config.admin_token)
        try:
            new, old = await runtime.reload()
        except Exception as exc:
            log.exception("reload failed")
            err = ClientError(
                503,
                "reload_failed",
                f"reload failed, still serving the old model: {exc.__class__.__name__}: {exc}",
            )
            return JSONResponse(err.body(), status_code=503)
        return JSONResponse(
            {
                "reloaded": True,
                "previous": old.describe() if old else None,
                "current": new.describe(),
            }
        )

    @app.exception_handler(ClientError)
    async def client_error(_: Request, exc: ClientError) -> Response:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            ClientError(exc.status_code, kind, str(exc.detail)).body(),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        return JSONResponse(
            ClientError(
                422, "invalid_request", "request validation failed", {"errors": exc.errors()}
            ).body(),
            status_code=422,
        )

    _front_scoring_routes(app, {"/invocations": invocations, "/predict": predict})
    return app


def _front_scoring_routes(
    app: FastAPI, routes: dict[str, Callable[[Request], Awaitable[Response]]]
) -> None:
    """Put ``POST /invocations`` and ``/predict`` in front of FastAPI's middleware and routing.

    Those layers (error and exception middlewares, the exit stack, route matching, dependency
    solving) took ~40 % of the event loop's time per prediction, and the scoring endpoints use
    none of them: ``score`` reads the raw request itself and turns every error into its own
    answer. Every other path and method (``/invocations/``, ``GET /predict``, the docs) goes the
    ordinary way, and the routes stay declared there for the OpenAPI document. Measured with
    bench/serve.py's load: +25-45 % requests/s, a lower p99. The front sits inside FastAPI's
    own entry, whose OpenTelemetry tracing (when configured) still covers these routes.
    """
    build = app.build_middleware_stack

    def build_with_front() -> ASGI:
        return _scoring_front(routes, build())

    app.build_middleware_stack = build_with_front  # type: ignore[method-assign]


ASGI = Callable[[Any, Any, Any], Awaitable[None]]


def _scoring_front(
    routes: dict[str, Callable[[Request], Awaitable[Response]]], fallback: ASGI
) -> ASGI:
    async def front(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = routes.get(scope["path"])
            if endpoint is not None:
                response = await endpoint(Request(scope, receive))
                await response(scope, receive, send)
                return
        await fallback(scope, receive, send)

    return front


_JSON_TYPES = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "boolean": "boolean",
    "string": "string",
}


def _with_row_schema(doc: dict[str, Any], schema: InputSchema) -> dict[str, Any]:
    items = [{"type": _JSON_TYPES.get(c.type, "string")} for c in schema.columns]
    rows = {
        "type": "array",
        "minItems": 1,
        "items": {
            "anyOf": [
                {
                    "type": "array",
                    "prefixItems": items,
                    "items": False,
                    "minItems": len(items),
                    "maxItems": len(items),
                },
                {
                    "type": "object",
                    "properties": {c.name: t for c, t in zip(schema.columns, items, strict=True)},
                    "required": [c.name for c in schema.columns if c.required],
                    "additionalProperties": False,
                },
            ]
        },
    }
    doc = copy.deepcopy(doc)
    body = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    body["schema"]["properties"]["data"] = rows
    inv = doc["paths"]["/invocations"]["post"]["requestBody"]["content"]["application/json"]
    inv["schema"]["properties"]["instances"] = rows
    inv["schema"]["properties"]["inputs"] = rows
    return doc


def _row_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63


def _not_ready_message(runtime: Runtime) -> str:
    if runtime.load_error:
        return f"the model failed to load: {runtime.load_error}"
    return "the model is still loading"


def _authorize(request: Request, token: str | None) -> None:
    if not token:
        raise ClientError(403, "admin_disabled", "the admin API is disabled (no MLOPS_ADMIN_TOKEN)")
    header = request.headers.get("authorization", "")
    if not header:
        raise ClientError(401, "unauthorized", "missing 'Authorization: Bearer <token>'")
    scheme, _, given = header.partition(" ")
    # As bytes: a header may carry any octets, and compare_digest refuses non-ASCII strings.
    offered = given.strip().encode("utf-8", "surrogateescape")
    if scheme.lower() != "bearer" or not hmac.compare_digest(offered, token.encode("utf-8")):
        raise ClientError(403, "forbidden", "wrong admin token")


async def _read_body(request: Request, config: ServerConfig) -> bytes:
    """The whole body, within ``max_body_bytes`` and ``body_timeout``; ClientError otherwise.

    A body over the limit gets its 413 where the client can read it: a client that asked
    ``Expect: 100-continue`` is answered before it sends anything; any other is read to the end
    and thrown away first (up to a cap), since closing on unread data resets the connection.
    """
    limit = config.max_body_bytes
    declared = request.headers.get("content-length")
    too_large = ClientError(
        413,
        "payload_too_large",
        f"body exceeds the limit of {limit} bytes",
        {"limit": limit},
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        too_large.message = f"body of {int(declared)} bytes exceeds the limit of {limit} bytes"
        too_large.close = await _refuse_unread(request, config)
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(config.body_timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    too_large.close = await _refuse_unread(request, config, read=size)
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        raise ClientError(
            408,
            "request_timeout",
            f"the body did not arrive within {config.body_timeout:g}s",
            close=True,
        ) from None
    return b"".join(chunks)


async def _refuse_unread(request: Request, config: ServerConfig, read: int = 0) -> bool:
    """Before refusing a request whose body is not read: read the rest and discard it (up to
    a cap, within the body timeout), so the client can read the refusal. True when the
    connection must close instead (a 100-continue client that sent nothing, or too much)."""
    if "100-continue" in request.headers.get("expect", "").lower():
        return True
    cap = max(4 * config.max_body_bytes, 32 * 1024 * 1024)
    try:
        async with asyncio.timeout(config.body_timeout):
            async for chunk in request.stream():
                read += len(chunk)
                if read > cap:
                    return True
    except (TimeoutError, ClientDisconnect):
        return True
    except RuntimeError:  # the body was already read in full ("Stream consumed")
        return False
    return False
