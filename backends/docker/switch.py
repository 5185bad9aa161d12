"""Starting a deployment's version and switching to it with no failed request.

Deploying a new version over an existing deployment starts the new model container, waits for
``/ready``, switches the router (which returns once the old container has nothing in flight),
then removes every other model container of the deployment. Each model container remembers the
version it replaced (label ``previous-version``), which is what rollback goes to.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from backends.docker import hardening
from backends.docker.containers import (
    DEPLOYMENT,
    ROLE,
    active_model,
    get_deployment,
    model_containers,
    remove_container,
    router_of,
)
from backends.docker.engine import (
    LABEL,
    host_of,
    is_remote,
    translate_errors,
    url_for,
    url_on,
)
from backends.docker.engine_ports import free_port_on, port_free_on
from backends.errors import BackendError, Conflict, InvalidInput
from backends.ports import free_port, is_loopback
from backends.records import Deployment, ServingImage

__all__ = [
    "ContainerFailed",
    "check_can_follow",
    "check_reachable",
    "deploy",
    "follow_credentials",
    "free_port",
    "start_canary",
]


DEFAULT_TIMEOUT = 120.0  # seconds a new model container has to answer /ready


class ContainerFailed(BackendError):
    """A container exited or never became ready; the message carries its last log lines."""

    title = "Container failed"


def check_can_follow(tracking_uri: str | None) -> None:
    """A container that follows an alias reads the registry itself: only over HTTP."""
    if not (tracking_uri or "").startswith(("http://", "https://")):
        raise InvalidInput(
            "following an alias needs an HTTP tracking server (MLFLOW_TRACKING_URI="
            "http://...): a container cannot read a local sqlite store"
        )


def check_follow_reaches(client: Any, tracking_uri: str | None) -> None:
    """On an engine on another host, the container reads the registry from there: a tracking
    server on our loopback is not one it reaches."""
    from urllib.parse import urlsplit

    host = urlsplit(tracking_uri or "").hostname or ""
    if is_remote(client) and is_loopback(host):
        raise InvalidInput(
            f"the Docker engine runs on another host ({host_of(client)}): a container that "
            f"follows an alias there cannot reach the tracking server at {tracking_uri} (this "
            "host's loopback); use an address of the tracking server that host reaches",
            title="Cannot follow",
        )


def deploy(
    client: Any,
    image: ServingImage,
    name: str,
    *,
    port: int = 8080,
    host: str = "127.0.0.1",
    alias: str = "",
    follow_alias_ref: str | None = None,
    tracking_uri: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Deployment, int | None]:
    """Run ``image`` as deployment ``name``; an existing deployment is switched with no failed
    request. Returns the deployment and the version it replaced (None for a new one).
    ``env``: more server settings for the model container (``MLOPS_*``)."""
    if follow_alias_ref:
        check_can_follow(tracking_uri)
        check_follow_reaches(client, tracking_uri)
    router = router_of(client, name)
    previous = active_model(client, name) if router is not None else None
    if router is not None and router.status != "running":
        remove_container(router)
        router = None
    if router is None:
        check_reachable(client, host)
        if not port_free_on(client, port, host):
            raise Conflict(f"port {port} on {host} is already in use; choose another with --port")

    model_port = free_port_on(client, exclude={port})  # not the router's, if not bound yet
    replaced = _version_of(previous)
    new = _start_model(
        client, image, name, model_port, replaced, alias, follow_alias_ref, tracking_uri, env
    )
    try:
        _wait_ready(new, url_on(client, model_port), timeout)
    except BackendError:
        remove_container(new)
        raise
    # The router runs on the engine's host too: its upstreams are on that host's loopback.
    upstream = f"http://127.0.0.1:{model_port}"
    if router is None:
        router = _start_router(client, image, name, port, host, upstream)
        try:
            _wait_ready(router, url_for(client, host, port), timeout, path="/-/router/health")
        except BackendError:
            remove_container(router)
            remove_container(new)
            raise
    else:
        bound = router.labels.get(f"{LABEL}.host", "127.0.0.1")
        _switch(router, url_for(client, bound, port), upstream, str(image.version or ""))
    # Every other model container goes: the one replaced, and any a failed switch left.
    for stale in model_containers(client, name):
        if stale.id != new.id:
            remove_container(stale)
    return get_deployment(client, name), replaced


def start_canary(
    client: Any,
    image: ServingImage,
    name: str,
    *,
    alias: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 120.0,
    shadow: bool = False,
) -> tuple[Any, int]:
    """A canary container of ``image`` beside deployment ``name``'s serving one, ready (its
    /ready answered) on a private port (loopback on this host's engine, every address of
    another's); nothing of the deployment is touched. One that never
    becomes ready is removed and ContainerFailed says why (its last log lines). ``shadow``:
    it only answers the router's copies (labelled so: Prometheus does not count them as the
    deployment's traffic)."""
    port = free_port_on(client)
    active = active_model(client, name)
    container = _start_model(
        client,
        image,
        name,
        port,
        _version_of(active),
        alias,
        None,
        None,
        env,
        role="canary",
        shadow=shadow,
    )
    try:
        _wait_ready(container, url_on(client, port), timeout)
    except BaseException:
        remove_container(container)
        raise
    return container, port


def check_reachable(client: Any, host: str) -> None:
    """InvalidInput when a router bound to ``host`` could not be reached from this host: a
    loopback address of an engine on another host."""
    if is_remote(client) and is_loopback(host):
        raise InvalidInput(
            f"the Docker engine runs on another host ({host_of(client)}): a router on its "
            f"loopback ({host}) could not be reached from here; deploy with --host 0.0.0.0 "
            "(the default there) or one of that host's addresses",
            title="Address not reachable",
        )


def _version_of(container: Any | None) -> int | None:
    if container is None:
        return None
    text = container.labels.get(f"{LABEL}.version", "")
    return int(text) if text.isdigit() else None


def _start_model(
    client: Any,
    image: ServingImage,
    name: str,
    port: int,
    previous_version: int | None,
    alias: str,
    follow_ref: str | None,
    tracking_uri: str | None,
    extra_env: dict[str, str] | None = None,
    role: str = "model",
    shadow: bool = False,
) -> Any:
    """A model container for deployment ``name`` on private ``port`` (loopback on this host's
    engine, every address of another's: this host checks its readiness): the one that serves
    (``role`` model) or a canary beside it (``role`` canary, which `model_containers` and a
    switch leave alone)."""
    env = {"MLOPS_LOG_DIR": hardening.LOG_MOUNT, **(extra_env or {})}
    # On this host's engine a model server is for its router alone (loopback); on another
    # host's it also answers this one (readiness, a canary's direct scrapes): every address.
    listen = "0.0.0.0" if is_remote(client) else "127.0.0.1"
    env.update(MLOPS_PORT=str(port), MLOPS_HOST=listen, MLOPS_MODEL_ALIAS=alias)
    volumes = {hardening.log_volume(client, name): hardening.LOG_MOUNT}
    secret_files: dict[str, bytes] = {}
    if follow_ref:
        env.update(
            MLOPS_MODEL_URI=follow_ref,
            MLOPS_FOLLOW_ALIAS="1",
            MLFLOW_TRACKING_URI=tracking_uri or "",
            MLOPS_FOLLOW_INTERVAL=os.environ.get("MLOPS_FOLLOW_INTERVAL", "10"),
        )
        credentials, files, settings = follow_credentials(os.environ)
        env.update(settings)
        if credentials or files:
            # The registry's credentials reach the server through files of a volume only the
            # model containers mount: `docker inspect` shows their path, never the token.
            volumes[hardening.credentials_volume(client, name)] = hardening.CREDENTIALS_MOUNT
            env["MLOPS_CREDENTIALS_FILE"] = hardening.CREDENTIALS_FILE
            secret_files["mlflow-credentials.json"] = json.dumps(credentials).encode()
            for variable, (file_name, path) in _FILE_SETTINGS.items():
                if file_name in files:
                    secret_files[file_name] = files[file_name]
                    env[variable] = path
    labels = {
        ROLE: role,
        DEPLOYMENT: name,
        f"{LABEL}.model": image.model,
        f"{LABEL}.version": str(image.version or ""),
        f"{LABEL}.alias": alias,
        f"{LABEL}.run-id": image.run_id,
        f"{LABEL}.store": image.store,
        f"{LABEL}.port": str(port),
        f"{LABEL}.previous-version": str(previous_version or ""),
        f"{LABEL}.follow-alias": "true" if follow_ref else "false",
        **({f"{LABEL}.shadow": "true"} if shadow else {}),
    }
    suffix = secrets.token_hex(2)
    container = hardening.create(
        client,
        image.ref,
        f"mlops-{name}-v{image.version}-{'canary-' if role == 'canary' else ''}{suffix}",
        command=None,
        environment=env,
        labels=labels,
        volumes=volumes,
    )
    try:
        if secret_files:
            hardening.write_credentials(container, secret_files)
        with translate_errors():
            container.start()
    except BaseException:
        remove_container(container)
        raise
    return container


# MLflow's variables that may hold a secret (a registry URI may carry a database password):
# a follow-alias server needs them to read the registry.
SECRET_VARIABLES = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_REGISTRY_URI",
)
# Settings that are no secret, passed as they are.
PLAIN_VARIABLES = ("MLFLOW_TRACKING_INSECURE_TLS", "MLFLOW_HTTP_REQUEST_TIMEOUT")


_FILE_SETTINGS = {  # a variable naming a file on our host → the file's name and path inside
    "MLFLOW_TRACKING_SERVER_CERT_PATH": ("mlflow-ca.pem", hardening.CA_FILE),
    "MLFLOW_TRACKING_CLIENT_CERT_PATH": ("mlflow-client.pem", hardening.CLIENT_CERT_FILE),
}


def follow_credentials(
    environ: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, bytes], dict[str, str]]:
    """What a follow-alias container needs to read the registry as we do: the secrets (for
    the credentials file), the contents of the CA bundle and client certificate (the host's
    paths mean nothing inside), and the plain settings (for its environment)."""
    secrets_ = {v: environ[v] for v in SECRET_VARIABLES if environ.get(v)}
    plain = {v: environ[v] for v in PLAIN_VARIABLES if environ.get(v)}
    files: dict[str, bytes] = {}
    for variable, (file_name, _) in _FILE_SETTINGS.items():
        path = environ.get(variable)
        if not path:
            continue
        try:
            files[file_name] = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInput(
                f"{variable}={path} cannot be read ({exc.strerror}): the container needs it "
                "to reach the tracking server as we do"
            ) from exc
    return secrets_, files, plain


def _start_router(
    client: Any, image: ServingImage, name: str, port: int, host: str, upstream: str
) -> Any:
    # The admin token lives in the deployment's own volume, readable by the server user: not
    # in a label or the environment, where `docker inspect` would show it to anyone.
    labels = {
        ROLE: "router",
        DEPLOYMENT: name,
        f"{LABEL}.port": str(port),
        f"{LABEL}.host": host,
    }
    env = {"MLOPS_ADMIN_TOKEN_FILE": hardening.TOKEN_FILE, "MLOPS_PORT": str(port)}
    with translate_errors():
        existing = [
            c
            for c in client.containers.list(
                all=True, filters={"name": f"mlops-{name}"}, ignore_removed=True
            )
            if c.name == f"mlops-{name}"
        ]
    for c in existing:
        remove_container(c)
    volume = hardening.state_volume(client, name)
    command = ["python3", "-m", "server.router", "--listen", f"{host}:{port}"]
    command += ["--upstream", upstream, "--state-dir", hardening.STATE_DIR]
    command += ["--version", str(image.version or "")]
    if is_remote(client):
        # This host drives it from afar: its admin routes answer remote clients with the token.
        command.append("--remote-admin")
    router = hardening.create(
        client,
        image.ref,
        f"mlops-{name}",
        command=command,
        environment=env,
        labels=labels,
        volumes={volume: hardening.STATE_MOUNT},
    )
    try:
        hardening.write_state(router, hardening.new_token())
        with translate_errors():
            router.start()
    except BaseException:
        remove_container(router)
        raise
    return router


def _switch(router: Any, base: str, upstream: str, version: str) -> None:
    token = hardening.read_token(router)
    try:
        response = httpx.put(
            f"{base}/-/router/upstream",
            json={"upstream": upstream, "version": version, "drain_timeout": 30},
            headers={"Authorization": f"Bearer {token}"},
            timeout=60,
        )
    except httpx.HTTPError as exc:
        raise BackendError(
            f"could not switch the router at {base}: {exc}", title="Switch failed"
        ) from exc
    if response.status_code != 200:
        raise BackendError(
            f"router refused the switch ({response.status_code}): {response.text}",
            title="Switch failed",
        )


def _wait_ready(container: Any, base: str, timeout: float, path: str = "/ready") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with translate_errors():
            container.reload()
        crashed = container.attrs.get("RestartCount", 0) > 0 or container.status == "restarting"
        if container.status in ("exited", "dead") or crashed:
            raise ContainerFailed(_failure_text(container, "exited on start"))
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + path, timeout=2).status_code == 200:
                return
        # A server is ready ~2 s after its start; a switch waits for it, so every 0.1 s asked
        # is up to 0.2 s less of the switch (bench/rollback.py) for a few ms of the engine's.
        time.sleep(0.1)
    raise ContainerFailed(_failure_text(container, f"not ready after {timeout:.0f}s"))


def _failure_text(container: Any, what: str) -> str:
    try:
        logs = container.logs(tail=15).decode(errors="replace").strip()
    except Exception:
        logs = "(no logs)"
    return f"container {container.name} {what}; its last log lines:\n{logs}"
