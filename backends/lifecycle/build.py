"""Building the serving image of a version: pinned in the registry, downloaded, baked in."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from backends.docker import images
from backends.docker.registry import PushedImage
from backends.lifecycle.handles import Handles
from backends.mlflow.models import download_model
from backends.records import BuildOutcome, ModelVersion, ServingImage

__all__ = ["build", "image_for", "push"]

LogLine = Callable[[str], None]


def _ignore(_: str) -> None:
    pass


def _build(
    h: Handles,
    version: ModelVersion,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    on_log: LogLine = _ignore,
) -> ServingImage:
    with tempfile.TemporaryDirectory(prefix="mlops-model-") as tmp:
        on_log(f"downloading {version.uri}")
        model_dir = download_model(h.tracking_uri, version, Path(tmp) / "model")
        return images.build_image(
            h.docker(),
            model_dir,
            version,
            tag=tag,
            base_image=base_image,
            on_log=on_log,
            provenance=h.registry().provenance(version),
        )


def build(
    h: Handles,
    reference: str,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    on_log: LogLine = _ignore,
) -> BuildOutcome:
    """Build (or reuse from cache) the serving image of the version ``reference`` names now."""
    version = h.registry().resolve(reference)
    before = images.find_image(h.docker(), version)
    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        on_log(line)

    image = _build(h, version, tag=tag, base_image=base_image, on_log=log)
    # The build context is deterministic: the same id again, or every step from the cache,
    # means nothing changed (images.all_from_cache says when the two differ).
    unchanged = before is not None and (before.id == image.id or images.all_from_cache(lines))
    return BuildOutcome(image, version, cached=unchanged)


def image_for(
    h: Handles, version: ModelVersion, on_log: LogLine = _ignore
) -> tuple[ServingImage, bool]:
    """The image of exactly ``version`` and whether it had to be built now."""
    found = images.find_image(h.docker(), version)
    if found is not None:
        return found, False
    on_log(f"no image for {version.uri} yet; building it")
    return _build(h, version, on_log=on_log), True


def push(
    h: Handles, reference: str, registry: str, *, on_log: LogLine = _ignore
) -> tuple[PushedImage, bool]:
    """Push the serving image of the version ``reference`` names to ``registry`` (built
    first when there is none); the image there and whether it was built now."""
    from backends.docker.registry import check_registry
    from backends.docker.registry import push as push_image

    target = check_registry(registry)  # a usage error before anything is built
    version = h.registry().resolve(reference)
    image, built = image_for(h, version, on_log)
    return push_image(h.docker(), image, target, on_log), built
