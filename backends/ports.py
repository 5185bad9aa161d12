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

import ipaddress
import itertools
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable

from backends.errors import BackendError, InvalidInput

__all__ = ["DEFAULT_RANGE", "PORT_RANGE_ENV", "free_port", "port_is_free", "port_range"]

PORT_RANGE_ENV = "MLOPS_PORT_RANGE"
DEFAULT_RANGE = (20000, 32767)  # below Linux's default ephemeral range, above most services'
_EPHEMERAL_FILE = "/proc/sys/net/ipv4/ip_local_port_range"
_TRIES = 200
_RECENT_SECONDS = 60.0

# The ports handed out lately by this process: one caller may ask for two ports before binding
# either (a model container's and its router's), and a bind check alone would give the same
# port twice. Remembered for a minute (long enough for a container to bind its port), so a
# narrow range is not used up by a long-lived process.
_recent: dict[tuple[str, int], float] = {}
_lock = threading.Lock()
_draw = random.SystemRandom()  # not the seeded global: forked workers would draw alike


def _ephemeral() -> tuple[int, int]:
    try:
        with open(_EPHEMERAL_FILE) as f:
            low, high = f.read().split()[:2]
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_range() -> tuple[int, int]:
    """The ports drawn from: ``MLOPS_PORT_RANGE``, else 20000 up to the ephemeral range (or,
    where a host widened that range down to 20000, the largest span outside it)."""
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
    eph_low, eph_high = _ephemeral()
    low, high = DEFAULT_RANGE
    if min(high, eph_low - 1) - low >= 1000:
        return low, min(high, eph_low - 1)
    # Above the ephemeral range first: few services listen up there.
    above, below = (eph_high + 1, 65535), (1024, eph_low - 1)
    if above[1] - above[0] >= 1000:
        return above
    best = max(below, above, key=lambda span: span[1] - span[0])
    if best[1] - best[0] >= 100:
        return best
    return 1024, 65535  # the ephemeral range takes nearly everything: nothing is outside it


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this host's loopback in any spelling: 127.0.0.0/8, ::1 (bracketed
    or not, or IPv4-mapped), localhost in any case."""
    host = host.strip()
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind ``port`` on ``host`` now."""
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


def free_port(
    host: str = "127.0.0.1",
    exclude: Iterable[int] = (),
    is_free: Callable[[int, str], bool] = port_is_free,
) -> int:
    """A port free on ``host`` now, outside the kernel's ephemeral range, not in ``exclude``
    (ports the caller means to bind itself) and not handed out by this process in the last
    minute. Free now, not reserved: the caller binds it soon."""
    low, high = port_range()
    skip = set(exclude)
    with _lock:
        now = time.monotonic()
        for key in [k for k, at in _recent.items() if now - at > _RECENT_SECONDS]:
            del _recent[key]
        taken = skip | {port for (h, port) in _recent if h == host}
        # Random draws first (two processes rarely draw alike), then the whole range in order,
        # so a narrow range with one port left still finds it.
        # Lazily: the first draw is free almost always, and a draw costs a read of urandom.
        draws = (int(_draw.randint(low, high)) for _ in range(_TRIES))
        for port in itertools.chain(draws, range(low, high + 1)):
            if port in taken or not is_free(port, host):
                continue
            _recent[(host, port)] = now
            return port
        # Every free port was handed out lately: the one handed out longest ago is likeliest
        # to be bound (and then not bindable) or abandoned.
        oldest_first: list[tuple[str, int]] = sorted(_recent, key=_recent.__getitem__)
        for h, port in oldest_first:
            if h == host and port not in skip and low <= port <= high and is_free(port, host):
                _recent[(host, port)] = now
                return port
    raise BackendError(
        f"no free port on {host} in {low}-{high}"
        + (f" ({PORT_RANGE_ENV})" if os.environ.get(PORT_RANGE_ENV) else "")
    )
