"""The Docker engine connection, the translation of its failures into ours, and its times."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from backends.errors import BackendError, Conflict, InvalidInput, NotFound, Unavailable

LABEL = "org.mlops-console"


def engine_address(docker_host: str | None = None) -> str:
    return docker_host or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect(docker_host: str | None = None, timeout: float = 60) -> Any:
    """A client for a reachable engine, or Unavailable (exit 3) saying where we looked."""
    import docker
    from docker.errors import DockerException

    address = engine_address(docker_host)
    if address.startswith("ssh://"):
        # docker-py's ssh transport needs paramiko, which we do not ship, and every address of
        # a deployment (readiness, switches, scrapes) still assumes the engine's host is ours.
        raise InvalidInput(
            f"Docker engine at {address}: ssh:// engines are not supported yet; use this host's "
            "engine (its unix:// socket, or tcp:// on this host)",
            title="Docker engine not supported",
        )
    try:
        client = docker.DockerClient(base_url=address, timeout=int(timeout))
        client.ping()
    except DockerException as exc:
        raise Unavailable(
            f"Docker engine at {address} is not reachable (is dockerd running?): "
            f"{_first_line(exc)}",
            title="Docker unreachable",
        ) from exc
    except Exception as exc:  # requests' connection errors when the socket is there but dead
        raise Unavailable(
            f"Docker engine at {address} is not reachable (is dockerd running?)",
            title="Docker unreachable",
        ) from exc
    return client


@contextmanager
def translate_errors() -> Iterator[None]:
    """Docker SDK exceptions → backends.errors."""
    from docker.errors import APIError, DockerException, ImageNotFound
    from docker.errors import NotFound as DockerNotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError

    try:
        yield
    except BackendError:
        raise
    except (ImageNotFound, DockerNotFound) as exc:
        raise NotFound(_first_line(exc.explanation or exc)) from exc
    except APIError as exc:
        message = _first_line(exc.explanation or exc)
        if exc.status_code == 409:
            raise Conflict(message) from exc
        raise BackendError(message, title="Docker error") from exc
    except (RequestsConnectionError, DockerException) as exc:
        raise Unavailable(
            f"Docker engine is not reachable: {_first_line(exc)}", title="Docker unreachable"
        ) from exc


def log_lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """Text lines from a log stream's chunks (a chunk may end mid-line)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode(errors="replace")
    if buffer:
        yield buffer.decode(errors="replace")


def _first_line(value: object) -> str:
    text = str(value).strip()
    return text.splitlines()[0] if text else value.__class__.__name__


def parse_time(text: str) -> datetime | None:
    """A time as Docker gives it (RFC 3339, nanoseconds), or None."""
    if not text or text.startswith("0001-"):
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
