"""Picking a free TCP port that stays free until the listener that asked for it binds it.

A port the kernel hands out for ``bind(port 0)`` lies in its ephemeral range
(``net.ipv4.ip_local_port_range``, 32768-60999 by default), the range every outgoing
connection's local port is also drawn from. Between our release of such a port and the
container or process binding it (a second or more for a container), any connection from this
host may take it, and the listener fails with "address already in use" — on a busy box (a load
test, a CI run) it does. So ports are drawn at random below the ephemeral range, where no
outgoing connection lands, and checked by binding them. ``MLOPS_PORT_RANGE`` (``LOW-HIGH``)
narrows the draw: a host whose firewall opens one range, or parallel test workers each given a
slice of their own.
"""

from __future__ import annotations

import os
import random
import socket
import threading
from collections import deque

from backends.errors import BackendError, InvalidInput

__all__ = ["DEFAULT_RANGE", "PORT_RANGE_ENV", "free_port", "port_range"]

PORT_RANGE_ENV = "MLOPS_PORT_RANGE"
DEFAULT_RANGE = (20000, 32767)  # below Linux's default ephemeral range, above most services'
_EPHEMERAL_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_TRIES = 200

# The ports handed out lately by this process: one caller may ask for two ports before binding
# either (a model container's and its router's), and a bind check alone would give the same
# port twice.
_recent: deque[tuple[str, int]] = deque(maxlen=64)
_lock = threading.Lock()
_draw = random.SystemRandom()  # not the seeded global: forked workers would draw alike


def _ephemeral_low() -> int:
    try:
        with open(_EPHEMERAL_FILE) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_range() -> tuple[int, int]:
    """The ports drawn from: ``MLOPS_PORT_RANGE``, else 20000 up to the ephemeral range."""
    raw = os.environ.get(PORT_RANGE_ENV, "").strip()
    if raw:
        low_s, sep, high_s = raw.partition("-")
        try:
            low, high = int(low_s), int(high_s)
        except ValueError:
            low = high = -1
        if not sep or not 1024 <= low <= high <= 65535:
            raise InvalidInput(
                f"{PORT_RANGE_ENV}={raw!r} is not a port range: give LOW-HIGH, "
                "1024 <= LOW <= HIGH <= 65535 (e.g. 20000-29999)"
            )
        return low, high
    low, high = DEFAULT_RANGE
    high = min(high, _ephemeral_low() - 1)
    if high - low < 100:  # an ephemeral range moved low: nothing sensible is left below it
        return 1024, 65535
    return low, high


def _bindable(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        # As a server binds (uvicorn and Go's net set SO_REUSEADDR): a port whose last
        # connection lingers in TIME_WAIT is free for a listener.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` now, outside the kernel's ephemeral range, not handed out lately
    by this process. Free now, not reserved: the caller binds it soon."""
    low, high = port_range()
    with _lock:
        for _ in range(_TRIES):
            port = _draw.randint(low, high)
            if (host, port) in _recent or not _bindable(host, port):
                continue
            _recent.append((host, port))
            return port
    raise BackendError(
        f"no free port on {host} in {low}-{high} after {_TRIES} tries"
        + (f" ({PORT_RANGE_ENV})" if os.environ.get(PORT_RANGE_ENV) else "")
    )
