"""How a registry address is read (Docker's own rule for what names a registry), and how the
engine's answers to a push become our errors. The push itself, to a real registry:
tests/integration/test_swarm.py."""

from __future__ import annotations

from typing import Any

import pytest

from backends.docker import registry
from backends.errors import InvalidInput, Unavailable
from backends.records import ServingImage


@pytest.mark.parametrize(
    "given", ["127.0.0.1:5000", "registry.example.com", "localhost", "localhost:5000", "[::1]:5000"]
)
def test_a_registry_is_host_and_port_as_docker_spells_it(given: str) -> None:
    assert registry.check_registry(given + "/") == given


@pytest.mark.parametrize(
    ("given", "says"),
    [
        (
            "http://127.0.0.1:5000",
            "give host[:port] as Docker does (e.g. 127.0.0.1:5000), not a URL",
        ),
        ("myregistry", "is not host[:port]"),  # Docker would read a Hub namespace
        ("reg:5000x", "is not host[:port]"),
        ("a b:5000", "is not host[:port]"),
    ],
)
def test_anything_else_is_refused_saying_what_is_expected(given: str, says: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        registry.check_registry(given)
    assert says in caught.value.message


class Engine:
    """The engine's push answers, as the SDK streams them."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.events = events
        self.tagged: list[tuple[str, str, str]] = []
        self.api = self

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.tagged.append((image, repository, tag))

    def push(self, repository: str, tag: str, **_: Any) -> list[dict[str, Any]]:
        return self.events


IMAGE = ServingImage(
    "abc123", ("reg.old:5000/mlops/iris:v2-1a", "mlops/iris:v2-1a"), "iris", 2, "run", 0, None
)


def test_a_push_is_tagged_under_the_images_own_repository_and_pinned_by_digest() -> None:
    engine = Engine([{"status": "Pushed", "id": "l1"}, {"aux": {"Digest": "sha256:ff"}}])
    pushed = registry.push(engine, IMAGE, "127.0.0.1:5000")
    # Not nested in the registry of an earlier push.
    assert engine.tagged == [("abc123", "127.0.0.1:5000/mlops/iris", "v2-1a")]
    assert pushed.tag == "127.0.0.1:5000/mlops/iris:v2-1a"
    assert pushed.pinned == "127.0.0.1:5000/mlops/iris@sha256:ff"


def test_an_unreachable_registry_is_exit_3_and_a_refusal_names_the_registry() -> None:
    down = Engine([{"error": 'Get "http://r:1/v2/": dial tcp r:1: connect: connection refused'}])
    with pytest.raises(Unavailable, match=r"image registry 127\.0\.0\.1:5000 is not reachable"):
        registry.push(down, IMAGE, "127.0.0.1:5000")
    login = Engine([{"errorDetail": {"message": "unauthorized: authentication required"}}])
    with pytest.raises(registry.PushRefused) as caught:
        registry.push(login, IMAGE, "127.0.0.1:5000")
    assert "registry 127.0.0.1:5000 refused 127.0.0.1:5000/mlops/iris:v2-1a" in caught.value.message
    assert "docker login 127.0.0.1:5000" in caught.value.message
    silent = Engine([{"status": "Pushed"}])
    with pytest.raises(registry.PushRefused, match="gave no digest"):
        registry.push(silent, IMAGE, "127.0.0.1:5000")
