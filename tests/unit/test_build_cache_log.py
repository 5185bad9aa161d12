"""Reading a classic-builder log: every step from the cache, or not."""

from __future__ import annotations

from backends.docker.images import all_from_cache

CACHED = [
    "Step 1/5 : ARG BASE_IMAGE=python:3.11-slim",
    "Step 2/5 : FROM mlops-base:bookworm",
    " ---> c4dbad5a9d8b",
    "Step 3/5 : COPY wheelhouse/ /tmp/wheelhouse/",
    " ---> Using cache",
    " ---> 3fd11c06f132",
    "Step 4/5 : RUN python3 -m venv /opt/venv",
    " ---> Using cache",
    " ---> 74f68ebe9652",
    "Step 5/5 : COPY model/ /model/",
    " ---> Using cache",
    " ---> 889a90820351",
    "Successfully built 889a90820351",
]


def test_every_layer_step_cached_is_all_from_cache() -> None:
    assert all_from_cache(CACHED)


def test_one_step_run_again_is_not() -> None:
    ran = [*CACHED[:9], "Step 5/5 : COPY model/ /model/", " ---> 0ab1c2d3e4f5"]
    assert not all_from_cache(ran)
    assert not all_from_cache(CACHED[:10])  # the last step still running: not known cached
    assert not all_from_cache([])
