"""An image's labels are written as one LABEL instruction at the end of its Dockerfile (one
build step instead of one per label): whatever a model's name, its store or its provenance
holds comes back from the engine as it went in."""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest

from backends.docker.images import label_instruction

pytestmark = [pytest.mark.integration, pytest.mark.docker]

AWKWARD = [
    "plain",
    "with space",
    'a "quoted" name',
    "it's",
    "back\\slash",
    "trailing backslash\\",
    "$HOME and ${PATH} and $(id)",
    "\\$escaped",
    "`tick`",
    "k=v",
    "#not a comment",
    "tab\there",
    "üñíçødé",
    "",
]


def built_labels(docker_client: Any, base_image: str, labels: dict[str, str]) -> dict[str, str]:
    line, rest = label_instruction(labels)
    dockerfile = f"FROM {base_image}\n{line}\n".encode()
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    archive.seek(0)
    image, _ = docker_client.images.build(
        fileobj=archive, custom_context=True, labels=rest, rm=True, pull=False
    )
    try:
        return dict(image.labels or {})
    finally:
        docker_client.images.remove(image.id, force=True)


def test_awkward_values_come_back_as_they_went_in(docker_client: Any, base_image: str) -> None:
    labels = {f"org.mlops-console.test.k{i}": value for i, value in enumerate(AWKWARD)}
    labels['org.mlops-console.test."odd key"'] = "x"
    line, rest = label_instruction(labels)
    assert line.startswith("LABEL ") and not rest  # all in one instruction
    got = built_labels(docker_client, base_image, labels)
    assert {k: got.get(k) for k in labels} == labels


def test_what_one_line_cannot_hold_is_left_to_the_builds_own_labels(
    docker_client: Any, base_image: str
) -> None:
    """A line break, and a value that would take the line past the parser's 64 KiB."""
    long = "x" * 70_000
    labels = {
        "org.mlops-console.test.one": "fine",
        "org.mlops-console.test.two": "two\nlines",
        "org.mlops-console.test.long": long,
    }
    line, rest = label_instruction(labels)
    assert "test.one" in line and "test.two" not in line and long not in line
    assert rest == {"org.mlops-console.test.two": "two\nlines", "org.mlops-console.test.long": long}
    got = built_labels(docker_client, base_image, labels)
    assert {k: got.get(k) for k in labels} == labels


def test_a_key_the_parser_would_split_is_not_written_into_the_line() -> None:
    line, rest = label_instruction({"org.example.a=b": "v", "org.example.c": "w"})
    assert rest == {"org.example.a=b": "v"} and line == 'LABEL "org.example.c"="w"'
