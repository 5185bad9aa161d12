"""Serving images to an image registry, so that every node of a swarm can pull them.

`push` tags our image ``REGISTRY/REPOSITORY:TAG`` (the repository and tag it was built with)
and pushes it through the engine, which does the registry's protocol (and its login: `docker
login REGISTRY` on the console's host). The answer is the image's digest: a swarm service is
given ``REGISTRY/REPOSITORY@sha256:...``, so every node runs the very bytes pushed, whatever
the tag points at later.

A registry the engine cannot reach is Unavailable (exit 3); one that answers and refuses (read
only, no such repository, a login needed) is a PushRefused naming the registry and its words.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backends.docker.engine import translate_errors
from backends.errors import BackendError, InvalidInput, Unavailable
from backends.records import ServingImage

__all__ = ["PushRefused", "PushedImage", "check_registry", "push"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_REGISTRY = re.compile(
    rf"^(?P<host>\[[0-9A-Fa-f:]+\]|{_LABEL}(?:\.{_LABEL})*)(?::(?P<port>\d{{1,5}}))?$"
)
# The engine's words when it cannot reach a registry at all (not a refusal by one).
_UNREACHABLE = (
    "connection refused",
    "no such host",
    "i/o timeout",
    "no route to host",
    "network is unreachable",
    "server misbehaving",
    "connection reset",
)


class PushRefused(BackendError):
    """The registry answered and did not take the image."""

    title = "Push refused"


@dataclass(frozen=True)
class PushedImage:
    """An image in a registry: the tag pushed and the digest it has there."""

    model: str
    version: int | None
    tag: str  # REGISTRY/REPOSITORY:TAG
    digest: str  # sha256:...

    @property
    def pinned(self) -> str:
        """REGISTRY/REPOSITORY@sha256:..., what a swarm service is given."""
        return f"{self.tag.rsplit(':', 1)[0]}@{self.digest}"


def check_registry(registry: str) -> str:
    """``registry`` as Docker spells one (``host:port`` or a host with a dot), else
    InvalidInput (exit 2) saying what is expected."""
    value = registry.strip().rstrip("/")
    if "://" in value:
        raise InvalidInput(
            f"image registry {registry!r}: give host[:port] as Docker does "
            f"(e.g. {value.split('://', 1)[1] or 'registry.example.com:5000'}), not a URL"
        )
    found = _REGISTRY.match(value)
    # Docker's own rule: a first part with a dot or a port, or localhost, is a registry (else
    # it is a namespace on Docker Hub).
    host = found.group("host") if found else ""
    if not found or not (
        "." in host or found.group("port") or host == "localhost" or host.startswith("[")
    ):
        raise InvalidInput(
            f"image registry {registry!r} is not host[:port] (e.g. 127.0.0.1:5000 or "
            "registry.example.com)"
        )
    return value


def push(
    client: Any, image: ServingImage, registry: str, on_log: Callable[[str], None] = lambda _: None
) -> PushedImage:
    """Push ``image`` to ``registry``; the tag and the digest it has there."""
    registry = check_registry(registry)
    if not image.tags:
        raise InvalidInput(f"image {image.id} has no tag to push under: build it with a tag")
    # The repository and tag it was built with (a tag of an earlier push names its registry
    # first: that part is dropped, so a push to another registry is not nested in it).
    own = [t for t in image.tags if not _registry_of(t)] or list(image.tags)
    repository, _, tag = own[0].rpartition(":")
    if not repository or "/" in tag:
        repository, tag = own[0], "latest"
    if _registry_of(repository):
        repository = repository.split("/", 1)[1]
    target = f"{registry}/{repository}"
    with translate_errors():
        client.api.tag(image.id, target, tag)
        digest = ""
        for event in client.api.push(target, tag, stream=True, decode=True):
            if "error" in event or "errorDetail" in event:
                _refused(registry, f"{target}:{tag}", event)
            status = event.get("status", "")
            if status and "progress" not in event:
                on_log(f"{event.get('id', '')} {status}".strip())
            digest = (event.get("aux") or {}).get("Digest", digest)
    if not digest:
        raise PushRefused(f"registry {registry} gave no digest for {target}:{tag}")
    return PushedImage(image.model, image.version, f"{target}:{tag}", digest)


def _registry_of(reference: str) -> bool:
    """Whether ``reference``'s first part names a registry (Docker's rule)."""
    first, slash, _ = reference.partition("/")
    return bool(slash) and ("." in first or ":" in first or first == "localhost")


def _refused(registry: str, ref: str, event: dict[str, Any]) -> None:
    detail = event.get("errorDetail") or {}
    message = str(event.get("error") or detail.get("message") or "refused").strip()
    if any(words in message.lower() for words in _UNREACHABLE):
        raise Unavailable(
            f"image registry {registry} is not reachable from the Docker engine: {message}",
            title="Registry unreachable",
        )
    hint = f" (run `docker login {registry}`)" if "unauthorized" in message.lower() else ""
    raise PushRefused(f"registry {registry} refused {ref}: {message}{hint}")
