"""An HTTP relay of our own in front of a real server (the tracking server): slow, guarded by a
token, or speaking TLS with a certificate made for the test — what stands between an operator
and a far-away or locked-down MLflow."""

from __future__ import annotations

import http.server
import ssl
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx


def self_signed_certificate(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own CA (openssl), and its key."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


class RelayProxy:
    """Relays every request to ``upstream``. ``delay``: each waits that long first (a slow,
    far-away server). ``token``: a request without ``Authorization: Bearer TOKEN`` gets 401,
    as a server behind an authenticating gateway answers. ``tls``: (certificate, key) to
    listen with HTTPS. ``seen`` counts requests by whether they carried the token."""

    def __init__(
        self,
        upstream: str,
        *,
        delay: float = 0.0,
        token: str | None = None,
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        client = httpx.Client(base_url=upstream, timeout=120)
        self.seen = {"with_token": 0, "refused": 0}
        seen, lock = self.seen, threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _relay(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                if delay:
                    time.sleep(delay)
                if token is not None:
                    if self.headers.get("authorization") != f"Bearer {token}":
                        with lock:
                            seen["refused"] += 1
                        self._answer(
                            401,
                            {"content-type": "application/json"},
                            b'{"error_code": "UNAUTHENTICATED"}',
                        )
                        return
                    with lock:
                        seen["with_token"] += 1
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in ("host", "content-length", "authorization")
                }
                answer = client.request(self.command, self.path, content=body, headers=headers)
                self._answer(answer.status_code, dict(answer.headers), answer.content)

            def _answer(self, status: int, headers: dict[str, str], content: bytes) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _relay

            def log_message(self, *_: Any) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            # socketserver listens with a backlog of 5: a hundred clients connecting at once
            # overflow it, and the kernel drops their handshakes (the client waits, then times
            # out) — a server that refuses connections, not one that is only far away.
            request_queue_size = 1024

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
