"""The handles a console session shares: one registry client, one quick Docker client."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from backends.lifecycle.handles import Handles
    from console.config import Settings

QUICK_DOCKER_TIMEOUT = 5.0  # a listing or a probe: an operator wants "unreachable" at once


class Session:
    """The settings and the shared handles; made lazily, in the first worker that needs them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._handles: Handles | None = None
        self._lock = threading.Lock()

    def handles(self) -> Handles:
        """The session's handles (a quick Docker client: listings and probes)."""
        from backends.lifecycle.handles import Handles

        with self._lock:
            if self._handles is None:
                self._handles = Handles(
                    self.settings.tracking_uri,
                    self.settings.docker_host,
                    docker_timeout=QUICK_DOCKER_TIMEOUT,
                )
            return self._handles

    def docker(self) -> Any:
        return self.handles().docker()

    @contextmanager
    def for_change(self) -> Iterator[Handles]:
        """Handles for one change: the session's registry, and a Docker client with the CLI's
        timeout (a build step or a drain can stay silent longer than the quick client's)."""
        from backends.lifecycle.handles import Handles

        shared = self.handles()
        with Handles(
            self.settings.tracking_uri, self.settings.docker_host, registry=shared.registry()
        ) as handles:
            yield handles
