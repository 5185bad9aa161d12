"""What the hooks server acts with: the Docker engine it resolves deployments on, the gated
retraining it starts, and the registry it records outside alias moves into."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backends.lifecycle.handles import Handles
from backends.lifecycle.hooks import Target
from backends.records import RetrainOutcome, RetrainTrigger

__all__ = ["docker_factory", "mlflow_handler", "retrainer"]

log = logging.getLogger("mlops.hooks")


def docker_factory(docker_host: str | None) -> Callable[[], Any]:
    """A fresh engine client per lookup: the hooks server outlives engine restarts."""

    def client() -> Any:
        from backends.docker.engine import connect

        return connect(docker_host, timeout=10)

    return client


def retrainer(
    tracking_uri: str,
    docker_host: str | None,
    data: Path,
    eval_data: Path | None,
    fallback_project: Path,
) -> Callable[[Target, RetrainTrigger], RetrainOutcome]:
    """The gated retraining of `mlops retrain`, for one deployment, recording its trigger."""

    def retrain(target: Target, trigger: RetrainTrigger) -> RetrainOutcome:
        from backends.lifecycle import retrain as retrain_flow

        with Handles(tracking_uri, docker_host) as h:
            return retrain_flow.retrain_challenger(
                h,
                target.url,
                data,
                fallback_project=fallback_project,
                deployment=target.deployment,
                eval_data=eval_data,
                trigger=trigger,
                on_line=lambda line: log.debug("training: %s", line),
                on_step=lambda line: log.info("%s: %s", target.model, line),
            )

    return retrain


def mlflow_handler(
    tracking_uri: str, secret: str
) -> Callable[[bytes, dict[str, str]], dict[str, Any]]:
    """The registry webhook's handler: a signed alias event enters the history now, as a
    manual move (MLflow does not say who), unless it was our own."""

    def handle(body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        from backends.mlflow import webhooks
        from backends.mlflow.registry import Registry

        delivery = webhooks.verify(secret, headers, body)
        change = webhooks.parse_alias_change(body, delivery)
        if change is None:
            return {"recorded": False, "why": "not an alias event"}
        registry = Registry(tracking_uri, user="mlflow-webhook")
        note = (
            f"moved outside mlops (to {'v' + str(change.version) if change.version else 'unset'});"
            f" recorded from MLflow's registry webhook, delivery {change.delivery[:40]}"
        )
        event = registry.record_outside_move(change.model, change.alias, note)
        log.info(
            "registry webhook: %s of %s -> %s: %s",
            change.alias,
            change.model,
            change.version,
            "recorded" if event else "nothing to record (ours, or recorded already)",
        )
        return {"recorded": event is not None, "model": change.model, "alias": change.alias}

    return handle
