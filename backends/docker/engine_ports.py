"""Ports on the engine's host. On this host a port is free when it can be bound; on another
host (an engine reached over tcp://) we cannot bind there to ask, so a port is free when nothing
answers a connection to it there. That is a guess a firewall can fool: a container that then
cannot bind exits, and the step that started it says so with its last log lines."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

from backends.defaults import ALL_ADDRESSES, DEFAULT_HOST
from backends.docker.engine import host_of, is_remote
from backends.ports import free_port, port_is_free

__all__ = ["free_port_on", "port_free_on"]

_PROBE_TIMEOUT = 1.0


def port_free_on(client: Any, port: int, bound: str = DEFAULT_HOST) -> bool:
    """Whether ``port`` is free on the engine's host (for a router's port) for a listener bound
    to ``bound``: on this host, bindable at that address (every address: the wildcard itself,
    which anything listening at any address of its family holds); on another, where nothing
    answers."""
    if is_remote(client):
        return _nothing_answers(port, host_of(client))
    if bound in ALL_ADDRESSES:
        return port_is_free(port, "::" if ":" in bound else "0.0.0.0")
    return port_is_free(port, bound.strip("[]"))


def free_port_on(client: Any, exclude: Iterable[int] = ()) -> int:
    """A port free on the engine's host (for a model server's), as ``backends.ports.free_port``
    draws them."""
    if not is_remote(client):
        return free_port(exclude=exclude)
    return free_port(host_of(client), exclude, is_free=_nothing_answers)


def _nothing_answers(port: int, host: str) -> bool:
    try:
        with socket.create_connection((host, port), timeout=_PROBE_TIMEOUT):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        # Unreachable or silent (a firewall that drops): nothing we can see listens; if
        # something does, the container that binds it fails and says so.
        return True
