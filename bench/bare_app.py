"""The HTTP ceiling for bench/serve.py (issue 23.1's peer): a bare ASGI app under uvicorn
(uvloop, httptools, one process, as our server runs) that reads the request body and answers a
constant JSON body of the size of one prediction. No framework, no model, no parsing: what is
left of a request here is the HTTP layer alone.

    uvicorn bench.bare_app:app --loop uvloop --http httptools --no-access-log --port PORT
"""

from __future__ import annotations

from typing import Any

BODY = b'{"predictions": [2]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:  # the body is read, as any server must
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
