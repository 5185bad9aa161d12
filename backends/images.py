"""Serving images: one model version baked into the model server, built with no network.

`build_image` resolves a reference to a concrete version, downloads that version's model and its
run's ``drift_reference.json`` into a build context beside the server package and the offline
wheelhouse, and builds the repository's ``Dockerfile`` with the network off. Nothing from the
tracking server's address or credentials enters the context, so no layer carries them. The
context's contents are deterministic (the same version gives the same bytes), so a rebuild of an
unchanged version is all cache hits.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backends.docker_engine import LABEL, translate_errors
from backends.errors import BackendError, InvalidInput, NotFound
from backends.mlflow_client import connect as mlflow_connect
from backends.mlflow_client import translate_errors as mlflow_errors
from backends.mlflow_client import using_tracking_uri
from backends.records import ResolvedVersion, ServingImage

__all__ = ["ResolvedVersion", "build_image", "find_image", "list_images", "resolve_version"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCAL_BASE = "mlops-base:bookworm"
PUBLIC_BASE = "python:3.11-slim"


def parse_reference(reference: str) -> tuple[str, str | None, str | None]:
    """`NAME@ALIAS`, `NAME/VERSION` or `models:/...` → (name, alias, version)."""
    ref = reference.removeprefix("models:/")
    if "@" in ref:
        name, alias = ref.rsplit("@", 1)
        if name and alias:
            return name, alias, None
    elif "/" in ref:
        name, version = ref.rsplit("/", 1)
        if name and version.isdigit():
            return name, None, version
    raise InvalidInput(f"cannot read model reference {reference!r}: use NAME@ALIAS or NAME/VERSION")


def resolve_version(tracking_uri: str, reference: str) -> ResolvedVersion:
    """Pin a reference to a concrete registered version (aliases resolved now)."""
    name, alias, version = parse_reference(reference)
    client = mlflow_connect(tracking_uri)
    with mlflow_errors(tracking_uri):
        if alias is not None:
            mv = client.get_model_version_by_alias(name, alias)
        else:
            mv = client.get_model_version(name, version)
    created = (
        datetime.fromtimestamp(mv.creation_timestamp / 1000, tz=UTC)
        if mv.creation_timestamp
        else None
    )
    return ResolvedVersion(name, str(mv.version), mv.run_id or "", alias or "", created)


def image_repository(model: str) -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "-", model.lower()).strip("-.") or "model"
    return f"mlops/{slug}"


def default_tag(resolved: ResolvedVersion) -> str:
    return f"{image_repository(resolved.name)}:v{resolved.version}"


def default_base_image(client: Any) -> str:
    """MLOPS_BASE_IMAGE, else the locally built base when present, else the public one."""
    configured = os.environ.get("MLOPS_BASE_IMAGE")
    if configured:
        return configured
    from docker.errors import ImageNotFound

    try:
        client.images.get(DEFAULT_LOCAL_BASE)
        return DEFAULT_LOCAL_BASE
    except ImageNotFound:
        return PUBLIC_BASE


def wheelhouse_dir() -> Path:
    return Path(
        os.environ.get("MLOPS_WHEELHOUSE")
        or Path.home() / ".cache" / "mlops-console" / "wheelhouse"
    )


def ensure_wheelhouse(on_log: Callable[[str], None]) -> Path:
    """The offline wheelhouse (built once per machine with scripts/build-wheelhouse.sh)."""
    path = wheelhouse_dir()
    if (path / "constraints.txt").is_file():
        return path
    on_log(f"building the offline wheelhouse in {path} (once per machine)")
    script = REPO_ROOT / "scripts" / "build-wheelhouse.sh"
    result = subprocess.run(
        ["bash", str(script), str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
    )
    if result.returncode != 0:
        raise BackendError(
            f"could not build the wheelhouse: {result.stderr.strip()[-500:]}",
            title="Wheelhouse failed",
        )
    return path


def image_labels(resolved: ResolvedVersion) -> dict[str, str]:
    # No alias here: an image is one version, whatever alias points at it today. Containers
    # carry the alias they were deployed through (backends.containers).
    created = resolved.created.isoformat() if resolved.created else ""
    return {
        f"{LABEL}.model": resolved.name,
        f"{LABEL}.version": resolved.version,
        f"{LABEL}.run-id": resolved.run_id,
        "org.opencontainers.image.title": f"{resolved.name} v{resolved.version}",
        "org.opencontainers.image.version": resolved.version,
        "org.opencontainers.image.created": created,  # the version's, so rebuilds are identical
        "org.opencontainers.image.source": resolved.uri,
        "org.opencontainers.image.revision": resolved.run_id,
        "org.opencontainers.image.description": "mlops-console model server with a baked model",
    }


def find_image(
    client: Any, model: str, version: str, run_id: str | None = None
) -> ServingImage | None:
    """Our image of ``model`` ``version`` (built from ``run_id``, when given: two tracking
    stores can both have an "iris v2", and only the run says they are the same model)."""
    for image in list_images(client, model=model):
        if image.version == version and (run_id is None or image.run_id == run_id):
            return image
    return None


def list_images(client: Any, model: str | None = None) -> list[ServingImage]:
    """Our serving images, newest first."""
    selector = f"{LABEL}.model={model}" if model else f"{LABEL}.model"
    with translate_errors():
        images = client.images.list(filters={"label": selector})
    records = [_image_record(i) for i in images]
    return sorted(
        records, key=lambda r: r.created or datetime.min.replace(tzinfo=UTC), reverse=True
    )


def _image_record(image: Any) -> ServingImage:
    labels = image.labels or {}
    attrs = image.attrs
    created = attrs.get("Created", "")
    return ServingImage(
        id=image.short_id.removeprefix("sha256:"),
        tags=tuple(image.tags),
        model=labels.get(f"{LABEL}.model", ""),
        version=labels.get(f"{LABEL}.version", ""),
        alias=labels.get(f"{LABEL}.alias", ""),
        run_id=labels.get(f"{LABEL}.run-id", ""),
        size_bytes=int(attrs.get("Size", 0)),
        created=_parse_time(created),
    )


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    text = re.sub(r"(\.\d{6})\d+", r"\1", text).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def build_image(
    client: Any,
    tracking_uri: str,
    resolved: ResolvedVersion,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    on_log: Callable[[str], None] = lambda line: None,
) -> ServingImage:
    """Build (or reuse from cache) the image serving exactly ``resolved``."""
    tag = tag or default_tag(resolved)
    base = base_image or default_base_image(client)
    wheels = ensure_wheelhouse(on_log)
    with tempfile.TemporaryDirectory(prefix="mlops-build-") as tmp:
        context = Path(tmp)
        _assemble_context(context, wheels, tracking_uri, resolved, on_log)
        on_log(f"building {tag} for {resolved.uri} from {base}")
        image_id = _docker_build(client, context, tag, base, image_labels(resolved), on_log)
    with translate_errors():
        return _image_record(client.images.get(image_id))


def _assemble_context(
    context: Path,
    wheels: Path,
    tracking_uri: str,
    resolved: ResolvedVersion,
    on_log: Callable[[str], None],
) -> None:
    shutil.copy(REPO_ROOT / "Dockerfile", context / "Dockerfile")
    (context / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    _link_tree(wheels, context / "wheelhouse")
    shutil.copytree(
        REPO_ROOT / "server",
        context / "server",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    on_log(f"downloading {resolved.uri}")
    model_dir = context / "model"
    _download_model(tracking_uri, resolved, model_dir)
    (model_dir / "mlops-model.json").write_text(
        json.dumps(
            {
                "name": resolved.name,
                "version": resolved.version,
                "run_id": resolved.run_id,
                "source": resolved.uri,
            },
            sort_keys=True,
        )
    )


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir()
    for item in src.iterdir():
        if item.is_file():
            try:
                os.link(item, dst / item.name)  # no copy of ~100 MB per build when we can help it
            except OSError:
                shutil.copy2(item, dst / item.name)


def _download_model(tracking_uri: str, resolved: ResolvedVersion, model_dir: Path) -> None:
    import mlflow.artifacts

    with mlflow_errors(tracking_uri), using_tracking_uri(tracking_uri):
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=resolved.uri, dst_path=tmp, tracking_uri=tracking_uri
                )
            )
            if not (local / "MLmodel").is_file():
                raise NotFound(f"{resolved.uri} has no MLmodel file")
            shutil.copytree(local, model_dir)
        if resolved.run_id:
            try:
                ref = mlflow.artifacts.download_artifacts(
                    run_id=resolved.run_id,
                    artifact_path="drift_reference.json",
                    dst_path=str(model_dir),
                    tracking_uri=tracking_uri,
                )
            except Exception:
                ref = ""  # a model without a reference serves normally, drift "unavailable"
            if ref and Path(ref) != model_dir / "drift_reference.json":
                shutil.move(ref, model_dir / "drift_reference.json")


def _docker_build(
    client: Any,
    context: Path,
    tag: str,
    base: str,
    labels: dict[str, str],
    on_log: Callable[[str], None],
) -> str:
    log_lines: list[str] = []
    step = ""
    image_id = ""
    with translate_errors():
        stream = client.api.build(
            path=str(context),
            tag=tag,
            buildargs={"BASE_IMAGE": base},
            labels=labels,
            rm=True,
            forcerm=True,
            network_mode="none",
            decode=True,
            pull=False,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                tail = "\n".join(log_lines[-25:])
                raise BackendError(
                    f"{step or 'build'} failed: {detail.strip()}\n{tail}",
                    title="Image build failed",
                )
            text = chunk.get("stream", "")
            for line in text.splitlines():
                if not line.strip():
                    continue
                log_lines.append(line)
                if line.startswith("Step "):
                    step = line
                on_log(line)
            aux = chunk.get("aux") or {}
            if "ID" in aux:
                image_id = aux["ID"]
    if not image_id:
        image_id = tag
    return image_id
