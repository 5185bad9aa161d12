"""What an engine on another host refuses before anything runs there, and where the console
reaches a router bound to one address or to all (the engine host's address is remembered per
client by ``engine.connect``; a plain object stands for a client here)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from backends.docker import engine, switch
from backends.errors import InvalidInput
from backends.records import Deployment
from tests.tui.fakes import deployment


class Client:
    """Any object a client's engine host is remembered for."""


@pytest.fixture
def far() -> Client:
    client = Client()
    engine._REACH[client] = "192.0.2.10"
    return client


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"])
def test_a_router_on_the_other_hosts_loopback_is_refused(far: Client, host: str) -> None:
    with pytest.raises(InvalidInput, match="could not be reached from here"):
        switch.check_reachable(far, host)


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "10.1.2.3"])
def test_a_router_on_an_address_of_the_other_host_is_not(far: Client, host: str) -> None:
    switch.check_reachable(far, host)
    switch.check_reachable(Client(), "127.0.0.1")  # this host's engine: loopback is the default


def test_following_an_alias_there_needs_a_tracking_server_that_host_reaches(far: Client) -> None:
    with pytest.raises(InvalidInput, match="cannot reach the tracking server"):
        switch.check_follow_reaches(far, "http://127.0.0.1:5000")
    with pytest.raises(InvalidInput, match="cannot reach the tracking server"):
        switch.check_follow_reaches(far, "http://localhost:5000")
    switch.check_follow_reaches(far, "http://mlflow.internal:5000")
    switch.check_follow_reaches(Client(), "http://127.0.0.1:5000")  # this host's engine


def test_a_router_is_reached_at_the_address_it_is_bound_to(far: Client) -> None:
    assert engine.url_for(far, "0.0.0.0", 8080) == "http://192.0.2.10:8080"
    assert engine.url_for(far, "10.1.2.3", 8080) == "http://10.1.2.3:8080"
    assert engine.url_for(Client(), "127.0.0.1", 81) == "http://127.0.0.1:81"
    assert engine.url_for(Client(), "::", 81) == "http://127.0.0.1:81"
    assert engine.url_for(Client(), "[fd00::5]", 81) == "http://[fd00::5]:81"


def _deployment(host: str, engine_host: str = "") -> Deployment:
    return replace(deployment(), host=host, engine_host=engine_host)


def test_a_deployments_url_is_where_this_host_reaches_its_router() -> None:
    assert _deployment("127.0.0.1").url == "http://127.0.0.1:8080"
    assert _deployment("0.0.0.0").url == "http://127.0.0.1:8080"
    assert _deployment("0.0.0.0", "192.0.2.10").url == "http://192.0.2.10:8080"
    assert _deployment("10.1.2.3", "192.0.2.10").url == "http://10.1.2.3:8080"
    assert _deployment("::", "2001:db8::7").url == "http://[2001:db8::7]:8080"
