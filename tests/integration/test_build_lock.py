"""Builds at once share one build of the serving dependencies (backends/docker/images.py), by a
lock the engine keeps (backends/docker/lock.py's waiting_lock). Two builds of the `deps` stage
make two venvs whose files differ; the tag keeps the later, and each image built on the other
missed the cache at its next rebuild (ci27: `mlops image build` of an unchanged version built
it again)."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from backends.docker import images
from backends.docker.lock import waiting_lock
from backends.errors import Conflict

pytestmark = [pytest.mark.integration, pytest.mark.docker]


def test_a_waiting_lock_waits_for_its_holder_and_names_it_when_it_gives_up(
    docker_client: Any, base_image: str
) -> None:
    name = f"test-{uuid.uuid4().hex[:8]}"
    order: list[str] = []
    held = threading.Event()

    def holder() -> None:
        with waiting_lock(docker_client, name, base_image, "the first", 5, "busy:"):
            held.set()
            time.sleep(1.0)
            order.append("first done")

    thread = threading.Thread(target=holder)
    thread.start()
    assert held.wait(30)
    with (
        pytest.raises(Conflict, match=r"busy: the first on .* \(pid \d+\)"),
        waiting_lock(docker_client, name, base_image, "the impatient", 0.2, "busy:"),
    ):
        order.append("impatient")
    with waiting_lock(docker_client, name, base_image, "the second", 30, "busy:"):
        order.append("second")
    thread.join()
    assert order == ["first done", "second"]
    # Released: nothing is left behind in the engine.
    assert not docker_client.containers.list(all=True, filters={"name": f"mlops-{name}-lock"})


def test_builds_of_the_dependencies_at_once_build_them_once(
    docker_client: Any, base_image: str, tmp_path: Path
) -> None:
    # A context of our shape whose deps stage makes a different layer at every build.
    context = tmp_path / "context"
    (context / "wheelhouse").mkdir(parents=True)
    marker = uuid.uuid4().hex  # a tag of this test's own
    (context / "wheelhouse" / "requirements.txt").write_text(f"# {marker}\n")
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\n"
        "FROM ${BASE_IMAGE} AS deps\n"
        "RUN date +%s%N > /built-at && sleep 1\n"
        "FROM ${BASE_IMAGE}\n"
    )
    logs: list[list[str]] = [[], [], []]
    found: list[str] = ["", "", ""]

    def build(i: int) -> None:
        found[i] = images._dependencies_image(docker_client, context, base_image, logs[i].append)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert found[0] and found[0] == found[1] == found[2]
        building = [line for log in logs for line in log if "building the serving" in line]
        assert len(building) == 1, logs
    finally:
        for image_id in set(found) - {""}:
            docker_client.images.remove(image_id, force=True)


def test_a_lock_left_by_a_build_elsewhere_costs_a_wait_not_a_failed_build(
    docker_client: Any, base_image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build on another host that was killed leaves its lock until the TTL: ours waits a
    while, says for whom, then builds the dependencies itself."""
    from backends.docker import lock

    context = tmp_path / "context"
    (context / "wheelhouse").mkdir(parents=True)
    (context / "wheelhouse" / "requirements.txt").write_text(f"# {uuid.uuid4().hex}\n")
    (context / "Dockerfile").write_text(
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS deps\nRUN date +%s%N > /built-at\n"
        "FROM ${BASE_IMAGE}\n"
    )
    tag_digest: list[str] = []
    real_waiting_lock = images.waiting_lock

    def recording(client: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        tag_digest.append(name)
        # Another host's build holds it (its process cannot be asked after: trusted).
        labels = {**lock._holder("a build elsewhere"), f"{lock.LABEL}.lock.host": "elsewhere"}
        client.api.create_container(base_image, name=f"mlops-{name}-lock", labels=labels)
        return real_waiting_lock(client, name, *args, **kwargs)

    monkeypatch.setattr(images, "waiting_lock", recording)
    monkeypatch.setattr(images, "DEPS_LOCK_WAIT", 1.0)
    log: list[str] = []
    found = images._dependencies_image(docker_client, context, base_image, log.append)
    try:
        assert found
        (name,) = tag_digest
        assert name.startswith("build.serving-deps-")  # "." keeps it out of deployment names
        text = "\n".join(log)
        assert "waiting: the serving dependencies" in text and "elsewhere" in text, text
        assert "building them here after waiting 1 s" in text, text
        assert "building the serving dependencies" in text, text
    finally:
        docker_client.images.remove(found, force=True)
        for name in tag_digest:  # the stale lock this test left, if the build did not go
            for left in docker_client.containers.list(all=True, filters={"name": name}):
                left.remove(force=True)
