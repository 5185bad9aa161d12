"""One change at a time per deployment, across processes and hosts: a lock kept by the engine.

The lock is a created, never started, container named ``mlops-NAME-lock``: the engine refuses a
second container of that name (409), which makes creating it a compare-and-set every process
that drives the engine shares, wherever it runs. Its labels say who holds it and since when. A
lock whose holder is gone (its process on this host ended, or it is older than ``LOCK_TTL``)
is taken over.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from backends.docker.engine import LABEL, translate_errors
from backends.errors import Conflict

__all__ = ["LOCK_TTL", "deployment_lock", "waiting_lock"]

LOCK_TTL = 1800.0  # seconds: no switch takes this long; an older lock's holder is gone
ROLE = f"{LABEL}.role"


def _holder(who: str) -> dict[str, str]:
    return {
        ROLE: "lock",
        f"{LABEL}.lock.who": who,
        f"{LABEL}.lock.host": socket.gethostname(),
        f"{LABEL}.lock.pid": str(os.getpid()),
        f"{LABEL}.lock.at": str(time.time()),
    }


def _abandoned(labels: dict[str, str]) -> bool:
    try:
        age = time.time() - float(labels.get(f"{LABEL}.lock.at", "0"))
    except ValueError:
        return True
    if age > LOCK_TTL:
        return True
    if labels.get(f"{LABEL}.lock.host") != socket.gethostname():
        return False  # another host's process: trust it until the TTL
    try:
        os.kill(int(labels.get(f"{LABEL}.lock.pid", "0")), 0)
    except (ProcessLookupError, ValueError):
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def _describe(labels: dict[str, str]) -> str:
    try:
        since = datetime.fromtimestamp(float(labels.get(f"{LABEL}.lock.at", "0")), UTC)
        when = since.strftime("%H:%M:%S UTC")
    except ValueError:
        when = "?"
    who = labels.get(f"{LABEL}.lock.who", "someone")
    host = labels.get(f"{LABEL}.lock.host", "?")
    return f"{who} on {host} (pid {labels.get(f'{LABEL}.lock.pid', '?')}) since {when}"


@contextlib.contextmanager
def deployment_lock(client: Any, deployment: str, image: str, who: str) -> Iterator[None]:
    """Hold deployment ``deployment``'s lock for the block; Conflict (exit 5) naming the holder
    when another change holds it. ``image`` is any image the engine has (the lock never runs)."""
    with waiting_lock(
        client,
        deployment,
        image,
        who,
        wait=0.0,
        busy=f"deployment {deployment!r} is being changed by",
        labels={f"{LABEL}.deployment": deployment},
    ):
        yield


@contextlib.contextmanager
def waiting_lock(
    client: Any,
    name: str,
    image: str,
    who: str,
    wait: float,
    busy: str,
    on_wait: Callable[[str], None] = lambda _: None,
    labels: dict[str, str] | None = None,
) -> Iterator[None]:
    """Hold the engine-kept lock ``mlops-NAME-lock`` for the block, waiting up to ``wait``
    seconds (0: not at all) for another holder to let it go (then Conflict: "BUSY <holder>;
    ..."). ``on_wait`` hears once who is waited for; ``labels`` go on the lock beside ours."""
    deadline = time.monotonic() + wait
    told = False
    while True:
        try:
            lock = _acquire(client, f"mlops-{name}-lock", labels or {}, image, who, busy)
            break
        except Conflict as exc:
            if time.monotonic() >= deadline:
                raise
            if not told:
                on_wait(f"waiting: {exc}".split(";", 1)[0])
                told = True
            time.sleep(0.5)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            client.api.remove_container(lock, force=True)


def _acquire(
    client: Any, name: str, labels: dict[str, str], image: str, who: str, busy: str
) -> str:
    """Create the lock container ``name``: its id, or Conflict naming who holds it."""
    from docker.errors import APIError, NotFound

    lock = None
    holder = "another change"
    # A lock just released can keep its name reserved for a moment (409, yet not found): ask
    # again a few times before calling it taken.
    for attempt in range(20):
        try:
            created = client.api.create_container(
                image,
                name=name,
                command=["true"],
                labels={**_holder(who), **labels},
            )
            lock = created["Id"]
            break
        except APIError as exc:
            if exc.status_code != 409:
                with translate_errors():
                    raise
            try:
                held = client.containers.get(name)
            except NotFound:
                time.sleep(0.05 * (attempt + 1))  # released between the two calls: again
                continue
            holder = _describe(held.labels)
            if not _abandoned(held.labels):
                raise Conflict(
                    f"{busy} {_describe(held.labels)}; nothing changed, try again when it is done"
                ) from None
            with contextlib.suppress(APIError):
                held.remove(force=True)
    if lock is None:
        raise Conflict(f"{busy} {holder}; nothing changed, try again when it is done")
    return str(lock)
