"""MLflow's registry webhooks, as the tracking server sends them (MLflow 3, SQL stores): the
signature a receiver checks, the alias events it reads, and registering a receiver.

A delivery is a POST whose body is ``{"entity", "action", "timestamp", "data"}`` with headers
``X-MLflow-Delivery-Id``, ``X-MLflow-Timestamp`` (Unix seconds) and, when the webhook has a
secret, ``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from backends.errors import InvalidInput

__all__ = ["ALIAS_EVENTS", "AliasChange", "parse_alias_change", "register", "verify"]

ALIAS_EVENTS = ("model_version_alias.created", "model_version_alias.deleted")
MAX_AGE = 300.0  # seconds: an older delivery is a replay (MLflow's own advice is 5 minutes)


@dataclass(frozen=True)
class AliasChange:
    """An alias set (``version``) or deleted (None) on a registered model, by someone."""

    model: str
    alias: str
    version: int | None
    delivery: str


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> str:
    """The delivery id when the signature and time are right; PermissionError (a 401) when
    not. ``headers`` have lower-case names."""
    delivery = headers.get("x-mlflow-delivery-id", "")
    stamp = headers.get("x-mlflow-timestamp", "")
    signature = headers.get("x-mlflow-signature", "")
    if not delivery or not stamp or not signature:
        raise PermissionError("unsigned delivery: X-MLflow-Signature and its headers are missing")
    if not stamp.isdigit() or abs((now or time.time()) - int(stamp)) > MAX_AGE:
        raise PermissionError("delivery too old or dated in the future (replayed?)")
    version, _, given = signature.partition(",")
    try:
        content = f"{delivery}.{stamp}.".encode() + body
    except UnicodeEncodeError:
        raise PermissionError("bad delivery id") from None
    expected = base64.b64encode(
        hmac.new(secret.encode(), content, hashlib.sha256).digest()
    ).decode()
    if version != "v1" or not hmac.compare_digest(given.encode(), expected.encode()):
        raise PermissionError("bad signature")
    return delivery


def parse_alias_change(body: bytes, delivery: str) -> AliasChange | None:
    """The alias change a delivery carries; None for another entity (ignored); InvalidInput
    (a 400) for a body that is not MLflow's."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("not JSON") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), dict):
        raise InvalidInput("not an MLflow webhook delivery: no data object")
    event = f"{doc.get('entity')}.{doc.get('action')}"
    if event not in ALIAS_EVENTS:
        return None
    data: dict[str, Any] = doc["data"]
    name, alias = data.get("name"), data.get("alias")
    if not isinstance(name, str) or not isinstance(alias, str) or not name or not alias:
        raise InvalidInput("an alias event needs data.name and data.alias")
    version = None
    if event.endswith("created"):
        text = str(data.get("version", ""))
        if not text.isdigit():
            raise InvalidInput(f"data.version {data.get('version')!r} is not a version number")
        version = int(text)
    return AliasChange(name, alias, version, delivery)


def register(client: Any, name: str, url: str, secret: str) -> str:
    """Register (or update) a webhook ``name`` for alias events to ``url``: its id."""
    from backends.mlflow.client import translate_errors

    with translate_errors(getattr(client, "tracking_uri", "")):
        for hook in client.list_webhooks():
            if hook.name == name:
                client.update_webhook(
                    hook.webhook_id, url=url, events=list(ALIAS_EVENTS), secret=secret
                )
                return str(hook.webhook_id)
        created = client.create_webhook(
            name=name, url=url, events=list(ALIAS_EVENTS), secret=secret
        )
        return str(created.webhook_id)
