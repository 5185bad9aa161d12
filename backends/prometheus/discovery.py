"""How Prometheus finds the serving containers: a file_sd targets file the console keeps current.

Pure functions turn deployments into scrape targets and file_sd target groups (labels
``model``, ``version``, ``alias``, ``deployment``, and ``role="canary"`` on a canary container
scraped beside its deployment's router); ``refresh_targets`` writes the file
atomically, so Prometheus (which re-reads it on change) never sees half of it. `mlops monitor
targets` and `deploy up/down/rollback` call ``refresh_targets`` (through
``backends.lifecycle.targets``, which reads the deployments); nobody edits prometheus.yml.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from backends.records import Deployment, ScrapeTarget, TargetsFile

__all__ = [
    "TARGETS_ENV",
    "base_url",
    "default_targets_path",
    "refresh_targets",
    "render_groups",
    "scrape_targets",
    "target_groups",
    "write_groups",
]

TARGETS_ENV = "MLOPS_TARGETS_FILE"
# A container in these states answers nothing and is about to be gone: not a target. Any other
# state (running, restarting, paused) stays, so Prometheus reports it down and alerts.
_GONE = frozenset({"created", "exited", "dead", "removing"})


def default_targets_path() -> Path:
    """$MLOPS_TARGETS_FILE, else the console's state directory (XDG_STATE_HOME)."""
    configured = os.environ.get(TARGETS_ENV)
    if configured:
        return Path(configured).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "mlops-console" / "prometheus-targets.json"


def base_url(url: str) -> str:
    """A model server's base URL as an operator may write it: ``host:port``, with or without
    the scheme, a trailing slash or ``/metrics``."""
    url = url.strip().rstrip("/")
    if url.endswith("/metrics"):
        url = url[: -len("/metrics")]
    return url if "://" in url else f"http://{url}"


def scrape_targets(deployments: Iterable[Deployment]) -> list[ScrapeTarget]:
    """The deployments Prometheus should scrape (those with a published port), sorted by name."""
    targets = []
    for d in deployments:
        if d.port is None or d.state in _GONE:
            continue
        # A port published on every interface is reached on loopback from this host, one on
        # another engine's host at that host's address (Deployment.address).
        host = d.address.strip("[]")
        if ":" in host:
            host = f"[{host}]"  # an IPv6 literal
        targets.append(
            ScrapeTarget(
                url=f"http://{host}:{d.port}",
                deployment=d.name,
                model=d.model,
                version=d.version,
                alias=d.alias,
            )
        )
    return sorted(targets, key=lambda t: (t.deployment, t.url))


def target_groups(targets: Iterable[ScrapeTarget]) -> list[dict[str, Any]]:
    """file_sd target groups: one per target, labelled model, version, alias and deployment
    (and role, for a canary)."""
    return [
        {
            "targets": [t.address],
            "labels": {
                "model": t.model,
                "version": str(t.version or ""),
                "alias": t.alias,
                "deployment": t.deployment,
                **({"role": t.role} if t.role else {}),
                **({"__metrics_path__": t.metrics_path} if t.metrics_path != "/metrics" else {}),
            },
        }
        for t in targets
    ]


def render_groups(groups: list[dict[str, Any]]) -> str:
    """The targets file's text: stable (sorted keys), so an unchanged set rewrites nothing."""
    return json.dumps(groups, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_groups(groups: list[dict[str, Any]], path: Path) -> bool:
    """Replace the targets file atomically; False (and no write) when it already says this."""
    text = render_groups(groups)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # Prometheus often runs as its own user
        os.replace(tmp, path)  # atomic on POSIX: readers see the old file or the new one
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return True


def refresh_targets(
    deployments: Iterable[Deployment],
    path: Path | None = None,
    canaries: Iterable[ScrapeTarget] = (),
) -> TargetsFile:
    """Make the targets file list exactly these deployments (the running, reachable ones) and
    the canary containers beside them."""
    where = path or default_targets_path()
    targets = scrape_targets(deployments) + sorted(canaries, key=lambda t: (t.deployment, t.url))
    changed = write_groups(target_groups(targets), where)
    return TargetsFile(path=str(where), targets=tuple(targets), changed=changed)
