"""Ports are drawn below the kernel's ephemeral range, checked by binding, never twice lately."""

from __future__ import annotations

import os
import socket

import pytest

from backends import ports
from backends.errors import BackendError, InvalidInput


def _ephemeral() -> tuple[int, int]:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = f.read().split()
    return int(low), int(high)


def test_the_default_range_lies_below_the_ephemeral_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)
    low, high = ports.port_range()
    assert 1024 <= low < high < _ephemeral()[0]


def test_a_port_the_kernel_would_give_an_outgoing_connection_is_never_drawn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)
    eph_low, eph_high = _ephemeral()
    drawn = [ports.free_port() for _ in range(300)]
    assert not [p for p in drawn if eph_low <= p <= eph_high]
    lately = drawn[-64:]  # the picker remembers its last 64
    assert len(set(lately)) == len(lately)  # none handed out twice lately


def test_the_range_variable_is_honoured_and_a_bad_one_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ports.PORT_RANGE_ENV, "23000-23049")
    assert all(23000 <= ports.free_port() <= 23049 for _ in range(20))
    for bad in ("23000", "x-y", "23049-23000", "80-90", "23000-70000"):
        monkeypatch.setenv(ports.PORT_RANGE_ENV, bad)
        with pytest.raises(InvalidInput, match=ports.PORT_RANGE_ENV):
            ports.free_port()


def test_a_port_in_use_is_skipped_a_narrow_range_is_not_used_up_and_a_full_one_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = 24000 + (os.getpid() % 500) * 8
    held = []
    try:
        for port in range(base, base + 3):  # three of the four held by a listener
            s = socket.socket()
            s.bind(("127.0.0.1", port))
            s.listen()
            held.append(s)
        monkeypatch.setattr(ports, "_recent", {})
        monkeypatch.setenv(ports.PORT_RANGE_ENV, f"{base}-{base + 3}")
        assert ports.free_port() == base + 3
        # Handed out, never bound (a container that did not start): asked again, the range's
        # one free port is given again rather than none.
        assert ports.free_port() == base + 3
        with pytest.raises(BackendError, match=f"{base}-{base + 3}"):
            ports.free_port(exclude={base + 3})  # the caller's own: none is left
    finally:
        for s in held:
            s.close()


def test_a_full_range_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        monkeypatch.setenv(ports.PORT_RANGE_ENV, f"{port}-{port}")
        with pytest.raises(BackendError, match=f"{port}-{port}"):
            ports.free_port()


def test_the_callers_own_port_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    base = 25000 + (os.getpid() % 500) * 8
    monkeypatch.setattr(ports, "_recent", {})
    monkeypatch.setenv(ports.PORT_RANGE_ENV, f"{base}-{base + 1}")
    assert {ports.free_port(exclude={base}) for _ in range(10)} == {base + 1}


def test_a_host_whose_ephemeral_range_starts_low_gets_ports_outside_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ports.PORT_RANGE_ENV, raising=False)
    monkeypatch.setattr(ports, "_ephemeral", lambda: (10000, 60999))
    assert ports.port_range() == (61000, 65535)
    monkeypatch.setattr(ports, "_ephemeral", lambda: (15000, 65000))
    assert ports.port_range() == (1024, 14999)
    monkeypatch.setattr(ports, "_ephemeral", lambda: (1024, 65535))
    assert ports.port_range() == (1024, 65535)  # nothing outside it: the whole range


def test_each_test_worker_draws_from_a_slice_of_its_own() -> None:
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None:
        pytest.skip("not under xdist: no slices to check")
    low, high = ports.port_range()
    default_low, default_high = ports.DEFAULT_RANGE
    assert default_low <= low <= high <= default_high
    assert high - low + 1 <= (default_high - default_low + 1) // 2


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "[::1]",
    "::ffff:127.0.0.1",
    " localhost",
    "LocalHost",
]
OTHER_ADDRESSES = ["10.0.0.5", "0.0.0.0", "", "::", "[::]", "serve-1.example", "::ffff:10.0.0.5"]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS)
def test_every_spelling_of_loopback_is_loopback_to_the_backends_and_the_server(host: str) -> None:
    from server.addresses import is_loopback as servers

    assert ports.is_loopback(host) and servers(host)


@pytest.mark.parametrize("host", OTHER_ADDRESSES)
def test_another_address_or_every_address_is_not_loopback(host: str) -> None:
    from server.addresses import is_loopback as servers

    assert not ports.is_loopback(host) and not servers(host)


def _this_hosts_engine() -> object:
    class Engine:  # a client of this host's engine: no other host was remembered for it
        pass

    return Engine()


@pytest.mark.parametrize(
    ("held", "bound"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("127.0.0.1", "0.0.0.0"),
        ("127.0.0.1", ""),
        ("::1", "::"),
        ("::1", "[::]"),
        ("::1", "[::1]"),
    ],
)
def test_a_port_held_at_one_address_is_taken_for_a_router_bound_there_or_on_every_address(
    held: str, bound: str
) -> None:
    from backends.docker.engine_ports import port_free_on

    family = socket.AF_INET6 if ":" in held else socket.AF_INET
    try:
        listener = socket.socket(family)
        listener.bind((held, 0))
    except OSError:
        pytest.skip(f"this host cannot bind {held}")
    with listener:
        listener.listen()
        port = listener.getsockname()[1]
        assert not port_free_on(_this_hosts_engine(), port, bound)
