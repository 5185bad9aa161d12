"""Serving images: one model version baked into the model server, built with no network.

``build_image`` is handed a model directory (downloaded from the registry by the caller) and
builds the shipped ``Dockerfile`` from it, the server package and the offline wheelhouse,
with the network off. Nothing from the tracking server's address or credentials enters the
context, so no layer carries them. The context's contents are deterministic (the same version
gives the same bytes), so a rebuild of an unchanged version is all cache hits.

An image names its version by run and store as well as by number (labels ``run-id`` and
``store``, tag ``mlops/MODEL:vN-RUN``): two tracking stores can both have an "iris v2", and
only the run tells them apart.
"""

from __future__ import annotations

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

from backends import shipped
from backends.docker.engine import LABEL, parse_time, translate_errors
from backends.docker.lock import waiting_lock
from backends.errors import BackendError, Conflict
from backends.records import ModelVersion, Provenance, ServingImage, version_number

__all__ = [
    "all_from_cache",
    "build_image",
    "default_tag",
    "find_image",
    "image_labels",
    "list_images",
]

DEFAULT_LOCAL_BASE = "mlops-base:bookworm"
PUBLIC_BASE = "python:3.11-slim"


def image_repository(model: str) -> str:
    slug = re.sub(r"[^a-z0-9_.-]+", "-", model.lower()).strip("-.") or "model"
    return f"mlops/{slug}"


def default_tag(version: ModelVersion) -> str:
    """``mlops/MODEL:vN-RUN``: the version's number, and the run that tells stores apart."""
    origin = (version.run_id or version.store or "local")[:8]
    return f"{image_repository(version.name)}:v{version.version}-{origin}"


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
    """The offline wheelhouse (built once per machine with scripts/build-wheelhouse.sh, from
    the shipped lock and the server's requirements: a checkout's, or an installed wheel's)."""
    path = wheelhouse_dir()
    if (path / "constraints.txt").is_file():
        return path
    on_log(f"building the offline wheelhouse in {path} (once per machine)")
    script = shipped.path("scripts/build-wheelhouse.sh")
    result = subprocess.run(
        ["bash", str(script), str(path)],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "PYTHON": sys.executable,
            "MLOPS_LOCK": str(shipped.path("requirements.lock")),
            "MLOPS_SERVER_REQUIREMENTS": str(shipped.path("server/requirements.txt")),
        },
    )
    if result.returncode != 0:
        raise BackendError(
            f"could not build the wheelhouse: {result.stderr.strip()[-500:]}",
            title="Wheelhouse failed",
        )
    return path


def image_labels(version: ModelVersion, provenance: Provenance | None = None) -> dict[str, str]:
    """Our labels (the model and its provenance) and the OCI annotations in the spec's own
    meanings: ``source`` is where the code is (a VCS URL), ``revision`` its commit — labels an
    operator's registry UI and scanners read. Neither is set when the run recorded no git."""
    # No alias here: an image is one version, whatever alias points at it today. Containers
    # carry the alias they were deployed through (backends.docker.containers).
    created = version.created.isoformat() if version.created else ""
    labels = {
        f"{LABEL}.model": version.name,
        f"{LABEL}.version": str(version.version),
        f"{LABEL}.run-id": version.run_id or "",
        f"{LABEL}.store": version.store,
        f"{LABEL}.model-uri": version.uri,
        "org.opencontainers.image.title": f"{version.name} v{version.version}",
        "org.opencontainers.image.version": str(version.version),
        "org.opencontainers.image.created": created,  # the version's, so rebuilds are identical
        "org.opencontainers.image.description": "mlops-console model server with a baked model",
    }
    if provenance is not None:
        if provenance.source:
            labels[f"{LABEL}.run-source"] = provenance.source
        if provenance.repo_url:
            labels["org.opencontainers.image.source"] = provenance.repo_url
        if provenance.commit:
            labels["org.opencontainers.image.revision"] = provenance.commit
    return labels


def find_image(client: Any, version: ModelVersion) -> ServingImage | None:
    """Our image of exactly ``version``: same model, number and run (and store, when the
    image names one) — another store's "iris v2" is not it."""
    for image in list_images(client, model=version.name):
        if image.version != version.version or image.run_id != (version.run_id or ""):
            continue
        if image.store and version.store and image.store != version.store:
            continue
        return image
    return None


def list_images(client: Any, model: str | None = None) -> list[ServingImage]:
    """Our serving images, newest first."""
    selector = f"{LABEL}.model={model}" if model else f"{LABEL}.model"
    from docker.errors import ImageNotFound

    # Not client.images.list: it lists, then inspects every image, and fails the whole
    # listing when one is removed in between (another process's `docker rmi`, a cleanup).
    # An image gone since the listing is simply not there any more.
    records = []
    with translate_errors():
        ids = client.api.images(filters={"label": selector}, quiet=True)
        for image_id in dict.fromkeys(ids):
            try:
                records.append(_image_record(client.images.get(image_id)))
            except ImageNotFound:
                continue
    return sorted(
        records, key=lambda r: r.created or datetime.min.replace(tzinfo=UTC), reverse=True
    )


def _image_record(image: Any) -> ServingImage:
    labels = image.labels or {}
    attrs = image.attrs
    return ServingImage(
        id=image.short_id.removeprefix("sha256:"),
        tags=tuple(image.tags),
        model=labels.get(f"{LABEL}.model", ""),
        version=version_number(labels.get(f"{LABEL}.version")),
        run_id=labels.get(f"{LABEL}.run-id", ""),
        size_bytes=int(attrs.get("Size", 0)),
        created=parse_time(attrs.get("Created", "")),
        store=labels.get(f"{LABEL}.store", ""),
    )


def all_from_cache(lines: list[str]) -> bool:
    """Whether a classic-builder log shows every step from cache (FROM and ARG excepted: they
    make no layer). Several builds of one version at once — a fresh machine, parallel CI —
    each run the steps no cache holds yet, so a later rebuild may take its cached layers from
    any of those equal chains: every step is cached, yet the id is not the one seen before."""
    steps = 0
    pending = False
    for line in lines:
        if line.startswith("Step "):
            if pending:
                return False
            instruction = line.partition(" : ")[2].split(" ", 1)[0].upper()
            pending = instruction not in ("FROM", "ARG")
            steps += 1
        elif pending and "Using cache" in line:
            pending = False
    return steps > 0 and not pending


def build_image(
    client: Any,
    model_dir: Path,
    version: ModelVersion,
    *,
    tag: str | None = None,
    base_image: str | None = None,
    on_log: Callable[[str], None] = lambda line: None,
    provenance: Provenance | None = None,
) -> ServingImage:
    """Build (or reuse from cache) the image serving ``version`` from its ``model_dir``."""
    tag = tag or default_tag(version)
    base = base_image or default_base_image(client)
    wheels = ensure_wheelhouse(on_log)
    with tempfile.TemporaryDirectory(prefix="mlops-build-") as tmp:
        context = Path(tmp)
        _assemble_context(context, wheels, model_dir)
        deps = _dependencies_image(client, context, base, on_log)
        on_log(f"building {tag} for {version.uri} from {base}")
        sources = [deps, *_cache_sources(client, version)]
        line, rest = label_instruction(image_labels(version, provenance))
        with (context / "Dockerfile").open("a", encoding="utf-8") as dockerfile:
            dockerfile.write(f"\n{line}\n")  # after the deps stage's digest was taken
        image_id = _docker_build(client, context, tag, base, rest, on_log, sources)
    with translate_errors():
        return _image_record(client.images.get(image_id))


def label_instruction(labels: dict[str, str]) -> tuple[str, dict[str, str]]:
    """One ``LABEL`` instruction holding ``labels``, for the end of the Dockerfile, and those it
    cannot hold (a line break, a key with "=", past the parser's 64 KiB line), left to the
    build's own labels. The classic builder makes each label it is given a step of its own — a
    container created and committed, ~50 ms on a quiet box and several times that under load,
    twelve times a build — where one instruction is one step. Quoted as the Dockerfile reads it
    back: a backslash, a double quote and a ``$`` (which would name a variable) escaped."""

    def quoted(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'

    inline: dict[str, str] = {}
    size = len("LABEL")
    for key, value in labels.items():
        word = f"{quoted(key)}={quoted(value)}"
        # The parser splits a word at its first "=" and reads a line of at most 64 KiB.
        if re.search(r"[\r\n]", key + value) or "=" in key or size + len(word.encode()) > 60_000:
            continue
        inline[key] = word
        size += 1 + len(word.encode())
    rest = {k: v for k, v in labels.items() if k not in inline}
    return ("LABEL " + " ".join(inline.values()) if inline else ""), rest


def _assemble_context(context: Path, wheels: Path, model_dir: Path) -> None:
    shutil.copy(shipped.path("Dockerfile"), context / "Dockerfile")
    (context / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    _link_tree(wheels, context / "wheelhouse")
    shutil.copytree(
        shipped.path("server"),
        context / "server",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copytree(model_dir, context / "model")
    # Readable by the server user inside, writable by nobody there (the image copies modes).
    for path in (context / "model", *(context / "model").rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)


def _link_tree(src: Path, dst: Path) -> None:
    dst.mkdir()
    for item in src.iterdir():
        if item.is_file():
            try:
                os.link(item, dst / item.name)  # no copy of ~100 MB per build when we can help it
            except OSError:
                shutil.copy2(item, dst / item.name)


DEPS_REPOSITORY = "mlops/serving-deps"


DEPS_LOCK_WAIT = 600.0  # seconds: a fresh machine's dependency build under load takes minutes


def _dependencies_image(
    client: Any, context: Path, base: str, on_log: Callable[[str], None]
) -> str:
    """The Dockerfile's ``deps`` stage (the venv every serving image copies), built once per
    wheelhouse, Dockerfile and base image and kept under a tag of its own. The classic builder
    takes cached layers only from the images a build names (``cache_from``), and a stage that
    no image keeps is never among them: without this every build would install the venv again
    (a minute) and leave a 600 MB image behind."""
    import hashlib

    from docker.errors import ImageNotFound

    digest = hashlib.sha256()
    try:
        digest.update(str(client.images.get(base).id).encode())
        have_base = True
    except ImageNotFound:
        digest.update(base.encode())  # the build's FROM says what is missing, in its words
        have_base = False
    digest.update((context / "Dockerfile").read_bytes())
    for item in sorted((context / "wheelhouse").iterdir()):
        digest.update(item.name.encode())
        if item.suffix == ".txt":
            digest.update(item.read_bytes())
    tag = f"{DEPS_REPOSITORY}:{digest.hexdigest()[:16]}"
    try:
        return str(client.images.get(tag).id)
    except ImageNotFound:
        pass
    if not have_base:  # no image to keep a lock with; the build's FROM names what is missing
        return _build_dependencies(client, context, tag, base, on_log)
    # One build per tag, whoever asks at once (builds in parallel, a fresh machine): two would
    # make two venvs whose files differ (bytecode timestamps), the tag would keep the later,
    # and every image built on the other would miss the cache at its next rebuild. The lock
    # only saves that: a holder that does not let go in DEPS_LOCK_WAIT (a build on another
    # host that was killed leaves its lock for LOCK_TTL) costs a build of our own, not a
    # failed one. "." keeps the lock's name out of deployment names (check_name).
    try:
        with waiting_lock(
            client,
            f"build.serving-deps-{digest.hexdigest()[:16]}",
            base,
            "an image build",
            wait=DEPS_LOCK_WAIT,
            busy=f"the serving dependencies {tag} are being built by",
            on_wait=on_log,
        ):
            try:
                return str(client.images.get(tag).id)  # built while this one waited
            except ImageNotFound:
                return _build_dependencies(client, context, tag, base, on_log)
    except Conflict as exc:
        on_log(f"{exc}; building them here after waiting {DEPS_LOCK_WAIT:.0f} s")
        return _build_dependencies(client, context, tag, base, on_log)


def _build_dependencies(
    client: Any, context: Path, tag: str, base: str, on_log: Callable[[str], None]
) -> str:
    on_log(f"building the serving dependencies {tag} (once per wheelhouse and base image)")
    return _docker_build(
        client, context, tag, base, {f"{LABEL}.serving-deps": "true"}, on_log, None, target="deps"
    )


def _cache_sources(client: Any, version: ModelVersion) -> list[str]:
    """The images a build takes its cached layers from, this version's own first. Several
    builds at once on an empty cache (a fresh machine, parallel CI) each make the dependency
    layers, leaving equal chains; left to itself the builder may follow any of them, and then
    finds no cached model layer on it. Naming the version's own image first makes a rebuild
    follow the chain it was built on; the others still lend their dependency layers."""
    own = find_image(client, version)
    ids = [own.id] if own is not None else []
    ids += [i.id for i in list_images(client)[:20] if i.id not in ids]
    return ids


def _docker_build(
    client: Any,
    context: Path,
    tag: str,
    base: str,
    labels: dict[str, str],
    on_log: Callable[[str], None],
    cache_from: list[str] | None = None,
    *,
    target: str | None = None,
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
            cache_from=cache_from or None,
            target=target,
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
