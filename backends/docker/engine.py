"""The Docker engine connection, the translation of its failures into ours, and its times."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
import socket
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from backends.defaults import ALL_ADDRESSES
from backends.errors import BackendError, Conflict, InvalidInput, NotFound, Unavailable

LABEL = "org.mlops-console"
DEFAULT_SOCKET = "unix:///var/run/docker.sock"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class EngineAddress:
    """Where the engine is, and how the Docker CLI would have chosen it: ``DOCKER_HOST`` (or a
    context's ``docker_host``) first, then the Docker context named by ``DOCKER_CONTEXT`` or by
    ``docker context use`` (``currentContext`` in the CLI's config.json), then the socket."""

    url: str
    tls: Any = None
    context: str = ""  # the Docker context it came from, if one did

    def __str__(self) -> str:
        return f"{self.url} (Docker context {self.context!r})" if self.context else self.url


def resolve(docker_host: str | None = None) -> EngineAddress:
    explicit = docker_host or os.environ.get("DOCKER_HOST")
    if explicit:
        # DOCKER_TLS_VERIFY and DOCKER_CERT_PATH apply to it, as with the CLI.
        from docker.utils import kwargs_from_env

        return EngineAddress(_with_scheme(explicit), kwargs_from_env().get("tls"))
    config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    name = os.environ.get("DOCKER_CONTEXT") or _current_context(config)
    if not name or name == "default":
        return EngineAddress(DEFAULT_SOCKET)
    return _context(config, name)


def _current_context(config: Path) -> str:
    """``docker context use``'s choice: ``currentContext`` in the CLI's config.json."""
    try:
        found = json.loads((config / "config.json").read_text())
    except (OSError, ValueError):
        return ""
    name = found.get("currentContext") if isinstance(found, dict) else None
    return name if isinstance(name, str) else ""


def _context(config: Path, name: str) -> EngineAddress:
    """Context ``name`` as the CLI stores it: ``contexts/meta/<sha256 of the name>/meta.json``
    under the CLI's config directory, its TLS files under ``contexts/tls/<same>/docker``."""
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config / "contexts" / "meta" / digest / "meta.json"
    try:
        document = json.loads(meta.read_text())
    except FileNotFoundError:
        raise InvalidInput(
            f"Docker context {name!r} does not exist (`docker context ls` lists them; it is "
            "chosen by DOCKER_CONTEXT or `docker context use`)",
            title="Docker context not found",
        ) from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"Docker context {name!r}: {meta} does not read: {exc}") from exc
    endpoints = document.get("Endpoints") if isinstance(document, dict) else None
    endpoint = endpoints.get("docker") if isinstance(endpoints, dict) else None
    host = endpoint.get("Host") if isinstance(endpoint, dict) else None
    if not isinstance(endpoint, dict) or not isinstance(host, str) or not host:
        raise InvalidInput(f"Docker context {name!r} names no Docker endpoint ({meta})")
    return EngineAddress(
        _with_scheme(host),
        _context_tls(config / "contexts" / "tls" / digest / "docker", endpoint),
        name,
    )


def _context_tls(directory: Path, endpoint: dict[str, Any]) -> Any:
    """The TLS settings of a context's endpoint (None: plain), as the CLI reads them."""
    files = {name: directory / f"{name}.pem" for name in ("ca", "cert", "key")}
    present = {name: str(path) for name, path in files.items() if path.is_file()}
    skip = bool(endpoint.get("SkipTLSVerify"))
    if not present and not skip:
        return None
    from docker.tls import TLSConfig

    cert = (present["cert"], present["key"]) if "cert" in present and "key" in present else None
    return TLSConfig(client_cert=cert, ca_cert=present.get("ca"), verify=not skip)


def _with_scheme(url: str) -> str:
    """``host:port`` as docker-py takes it (tcp), and the CLI's other spellings as they are."""
    return url if "://" in url else f"tcp://{url}"


def engine_address(docker_host: str | None = None) -> str:
    return str(resolve(docker_host))


def connect(docker_host: str | None = None, timeout: float = 60) -> Any:
    """A client for a reachable engine, or Unavailable (exit 3) saying where we looked."""
    import docker
    from docker.errors import DockerException

    address = resolve(docker_host)
    try:
        client = docker.DockerClient(base_url=address.url, tls=address.tls, timeout=int(timeout))
        client.ping()
    except DockerException as exc:
        raise Unavailable(
            f"Docker engine at {address} is not reachable (is dockerd running?): "
            f"{_first_line(exc)}",
            title="Docker unreachable",
        ) from exc
    except Exception as exc:
        # requests' connection errors when the socket is there but dead; paramiko's (an
        # ssh:// engine: host key not known, authentication refused, no route), said as is.
        why = f": {_first_line(exc)}" if urlsplit(address.url).scheme == "ssh" else ""
        raise Unavailable(
            f"Docker engine at {address} is not reachable (is dockerd running?){why}",
            title="Docker unreachable",
        ) from exc
    _REACH[client] = reach_host(address)
    return client


def reach_host(address: EngineAddress) -> str:
    """Where this host reaches what listens on the engine's host (the containers of a
    deployment run in its network, ``network_mode=host``): 127.0.0.1 for an engine on this
    host (a socket, or tcp:// to one of our own addresses), else the host its URL names."""
    parsed = urlsplit(address.url)
    if parsed.scheme in ("unix", "npipe", "http+unix", ""):
        return LOOPBACK
    host = parsed.hostname or ""
    if parsed.scheme == "ssh":
        host = _ssh_hostname(host)
    return LOOPBACK if not host or _is_this_host(host) else host


def _ssh_hostname(host: str) -> str:
    """The machine an ssh:// engine's host names, as docker-py's ssh transport reads it: the
    ``HostName`` of ``~/.ssh/config``'s entry for it (an alias), else the name itself."""
    config = Path.home() / ".ssh" / "config"
    if not config.is_file():
        return host
    try:
        import paramiko

        found = paramiko.SSHConfig.from_path(str(config)).lookup(host)
    except Exception:  # an unreadable config: docker-py's own connection says why
        return host
    return str(found.get("hostname") or host)


# The engine host of each client `connect` made (a client made elsewhere, e.g. a test's on the
# local socket, is this host's engine).
_REACH: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()


def host_of(client: Any) -> str:
    """The address at which this host reaches the engine's host: 127.0.0.1 when it is this
    host (``reach_host``)."""
    return _REACH.get(client, LOOPBACK)


def is_remote(client: Any) -> bool:
    """Whether ``client``'s engine runs on another host: what its containers listen on is
    reached at ``host_of(client)`` (they bind all its addresses, not its loopback)."""
    return host_of(client) != LOOPBACK


def url_on(client: Any, port: int | str) -> str:
    """The base URL of a port on the engine's host (a model server's, a router's)."""
    return _url(host_of(client), port)


def url_for(client: Any, bound: str, port: int | str) -> str:
    """The base URL of a listener bound to ``bound`` on the engine's host: every address of
    it (0.0.0.0) is reached at the engine host's; one address, at that address."""
    return url_on(client, port) if bound in ALL_ADDRESSES else _url(bound.strip("[]"), port)


def _url(host: str, port: int | str) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _is_this_host(host: str) -> bool:
    """Whether ``host`` names this machine: a loopback address, or one we can bind to."""
    try:
        found = {
            str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        }
    except (OSError, UnicodeError):
        return False
    for ip in found:
        if ipaddress.ip_address(ip.split("%", 1)[0]).is_loopback:
            return True
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        with socket.socket(family) as probe:
            try:
                probe.bind((ip, 0))
            except OSError:
                continue
            return True
    return False


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
