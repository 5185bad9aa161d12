"""`python -m server --model-uri REF [--host 127.0.0.1] [--port 8080]`."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys

import uvicorn

from server.app import create_app
from server.config import ServerConfig, load_credentials
from server.http_guard import guarded as http_protocol


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    p.add_argument(
        "--model-uri",
        default=os.environ.get("MLOPS_MODEL_URI"),
        help="NAME@ALIAS, NAME/VERSION, models:/..., runs:/..., or a model directory",
    )
    p.add_argument("--host", default=os.environ.get("MLOPS_HOST", "127.0.0.1"))
    p.add_argument("--port", type=int, default=int(os.environ.get("MLOPS_PORT", "8080")))
    p.add_argument("--max-batch-rows", type=int)
    p.add_argument("--max-wait-ms", type=float)
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument(
        "--follow-alias",
        action="store_true",
        default=None,
        help="reload when the served alias moves in the registry",
    )
    p.add_argument("--log-level", default=os.environ.get("MLOPS_LOG_LEVEL", "info"))
    args = p.parse_args(argv)
    load_credentials(os.environ)  # before anything asks the registry (a follow-alias server)
    if not args.model_uri:
        p.error("--model-uri (or MLOPS_MODEL_URI) is required")
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(message)s")
    # Parsing and predicting run in threads that hold the GIL for milliseconds at a time; the
    # event loop gets it back every 0.5 ms instead of every 5, so /health and small requests
    # are answered while a large one is processed.
    sys.setswitchinterval(float(os.environ.get("MLOPS_SWITCH_INTERVAL", "0.0005")))
    config = ServerConfig.from_env(
        args.model_uri,
        max_batch_rows=args.max_batch_rows,
        max_wait_ms=args.max_wait_ms,
        max_body_bytes=args.max_body_bytes,
        follow_alias=args.follow_alias,
    )
    fast = importlib.util.find_spec("uvloop") and importlib.util.find_spec("httptools")
    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=args.host,
            port=args.port,
            log_level=args.log_level.lower(),
            access_log=False,  # per-request logs cost more than the prediction; /metrics has it
            loop="uvloop" if fast else "asyncio",
            http=http_protocol(config.header_timeout) if fast else "h11",
            # Longer than any client's pool keeps an idle connection (the router's keeps 30 s),
            # so the server never closes one just as it is reused.
            timeout_keep_alive=int(config.keep_alive),
            timeout_graceful_shutdown=int(os.environ.get("MLOPS_DRAIN_SECONDS", "25")),
        )
    )
    runtime = app.state.runtime

    def stop_serving() -> None:
        server.should_exit = True

    runtime.on_fatal = stop_serving
    server.run()
    if runtime.load_error:
        print(f"error: the model failed to load: {runtime.load_error}", file=sys.stderr)
        raise SystemExit(1)


if __name__ == "__main__":
    main()
