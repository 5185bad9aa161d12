"""Listing our serving images while another process removes one (a cleanup, `docker rmi`):
the listing goes on without it instead of failing as a whole (CI's red in ci28)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from docker.errors import ImageNotFound

from backends.docker.engine import LABEL
from backends.docker.images import list_images


class Engine:
    """The two calls list_images makes: the ids by label, then one inspect per id."""

    def __init__(self, images: dict[str, Any], vanished: set[str]) -> None:
        self.listed: list[dict[str, Any]] = []
        self._images, self._vanished = images, vanished
        self.api = SimpleNamespace(images=self._ids)
        self.images = SimpleNamespace(get=self._get)

    def _ids(self, filters: dict[str, Any], quiet: bool) -> list[str]:
        self.listed.append(filters)
        return list(self._images)

    def _get(self, image_id: str) -> Any:
        if image_id in self._vanished:
            raise ImageNotFound(f"no such image: {image_id}")
        return self._images[image_id]


def image(image_id: str, version: str, created: str) -> Any:
    return SimpleNamespace(
        short_id=f"sha256:{image_id}",
        tags=[f"mlops/iris:{version}"],
        labels={f"{LABEL}.model": "iris", f"{LABEL}.version": version},
        attrs={"Size": 1, "Created": created},
    )


def test_an_image_removed_between_listing_and_inspecting_is_left_out() -> None:
    engine = Engine(
        {
            "a1": image("a1", "1", "2026-12-01T10:00:00Z"),
            "b2": image("b2", "2", "2026-12-02T10:00:00Z"),
            "c3": image("c3", "3", "2026-12-03T10:00:00Z"),
        },
        vanished={"b2"},
    )
    listed = list_images(engine, model="iris")
    assert [(i.id, i.version) for i in listed] == [("c3", 3), ("a1", 1)]  # newest first
    assert engine.listed == [{"label": f"{LABEL}.model=iris"}]
