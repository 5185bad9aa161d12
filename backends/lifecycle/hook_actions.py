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

__all__ = ["docker_factory", "retrainer"]

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
