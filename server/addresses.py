"""Client addresses: which answer this host's own clients only (the model server's /docs, the
router's admin routes). The server stands alone (it imports nothing of ``backends``), so this
is its own copy of ``backends.ports.is_loopback``; the two agree on every spelling."""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]


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
