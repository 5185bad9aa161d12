"""The shipped alertmanager.yml, read and adapted: the demo's (and the tests') waits cut short,
the retraining webhook pointed where a hooks server listens, or dropped when none does.

Alertmanager has no SDK; its config is YAML, and the shipped file stays the one source of the
routes, so a demo or a test exercises exactly the routing an operator deploys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backends import shipped

SHIPPED = shipped.path("deploy/alertmanager/alertmanager.yml")

__all__ = ["SHIPPED", "quick_config"]


def quick_config(
    text: str | None = None,
    *,
    wait: str = "1s",
    repeat: str = "1m",
    webhook_url: str = "",
    token_file: Path | None = None,
) -> str:
    """``text`` (default: the shipped config) with every route's group_wait and group_interval
    set to ``wait`` and repeat_interval to ``repeat``; the webhook receivers sent to
    ``webhook_url`` with the bearer token in ``token_file``, or emptied when no URL is given
    (a receiver with no configs drops what it gets, which is what "no hooks server" means)."""
    doc = yaml.safe_load(text if text is not None else SHIPPED.read_text())

    def quick(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = wait
        if "repeat_interval" in route:
            route["repeat_interval"] = repeat
        for child in route.get("routes") or ():
            quick(child)

    quick(doc["route"])
    for receiver in doc["receivers"]:
        hooks = receiver.get("webhook_configs")
        if not hooks:
            continue
        if not webhook_url:
            receiver.pop("webhook_configs")
            continue
        for hook in hooks:
            hook["url"] = webhook_url
            auth = hook.setdefault("http_config", {}).setdefault("authorization", {})
            if token_file is not None:
                auth["type"] = "Bearer"
                auth["credentials_file"] = str(token_file)
            else:
                hook["http_config"].pop("authorization")
    return str(yaml.safe_dump(doc, sort_keys=False))
