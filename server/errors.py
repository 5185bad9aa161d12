"""Client faults as exceptions the app turns into 4xx JSON bodies (never a 500)."""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """A request the server refuses; ``status`` is the HTTP status, ``kind`` the error type."""

    def __init__(
        self,
        status: int,
        kind: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        close: bool = False,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.details = details or {}
        self.close = close  # end the connection after answering (a body left unread)
        self.retry_after = retry_after

    @property
    def headers(self) -> dict[str, str]:
        """Response headers the refusal needs (Connection: close, Retry-After)."""
        out = {}
        if self.close:
            out["Connection"] = "close"
        if self.retry_after is not None:
            out["Retry-After"] = str(self.retry_after)
        return out

    def body(self, *, mlflow_compatible: bool = False) -> dict[str, Any]:
        """The JSON error body; on /invocations it also carries MLflow's own keys."""
        body: dict[str, Any] = {
            "error": {"type": self.kind, "message": self.message, "details": self.details}
        }
        if mlflow_compatible:
            # MLflow's own codes: a schema problem is INVALID_PARAMETER_VALUE, the rest BAD_REQUEST.
            body["error_code"] = "INVALID_PARAMETER_VALUE" if self.status == 422 else "BAD_REQUEST"
            body["message"] = self.message
        return body


def bad_json(message: str) -> ClientError:
    return ClientError(400, "invalid_json", message)


def bad_payload(message: str, **details: Any) -> ClientError:
    return ClientError(400, "invalid_payload", message, details)


def schema_mismatch(message: str, **details: Any) -> ClientError:
    return ClientError(422, "schema_mismatch", message, details)
