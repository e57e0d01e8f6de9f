"""The transport's one error: `ClusterError`, built from whatever failed (an HTTP status, a
broken connection), saying whether trying again can help and what a user should read."""

from __future__ import annotations

import email.utils
import json
import socket
import time
from typing import Any

import urllib3

# Statuses where trying the same request again later can succeed.
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ClusterError(Exception):
    """A Kubernetes call that failed.

    `retryable` is True when the same call may succeed later (connection errors, timeouts, 429,
    5xx, a write conflict) and False when repeating it cannot help (400, 401, 403, 404, 422...).
    `status` is the HTTP status (None when no answer came), `reason` the Kubernetes reason
    (`Invalid`, `Forbidden`, `Expired`...) or a short code (`Unreachable`, `Timeout`),
    `retry_after` the server's Retry-After in seconds, and `user_message` the sentence to show
    a user. `str(error)` is the technical description for logs.

    A 410 (`expired`) means a watch or list continuation used a resourceVersion the server no
    longer has: it is retryable, but only from a fresh list.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.user_message = user_message or message

    @property
    def expired(self) -> bool:
        return self.status == 410

    def __repr__(self) -> str:
        return (
            f"ClusterError({str(self)!r}, status={self.status!r}, reason={self.reason!r}, "
            f"retryable={self.retryable!r})"
        )


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_from_body(body: bytes | str | None) -> dict:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) and data.get("kind") == "Status" else {}


def _with_causes(message: str, status_obj: dict) -> str:
    """The Status message, plus any field causes it does not already spell out."""
    causes = (status_obj.get("details") or {}).get("causes") or []
    extra = []
    for cause in causes:
        text = cause.get("message") or ""
        field = cause.get("field") or ""
        line = f"{field}: {text}" if field and text else (field or text)
        if line and text not in message:
            extra.append(line)
    if extra:
        return f"{message}: {'; '.join(extra)}" if message else "; ".join(extra)
    return message


def http_error(
    cluster: str,
    status: int,
    body: bytes | str | None,
    headers: Any,
    *,
    what: str,
    conflict_retryable: bool = False,
) -> ClusterError:
    status_obj = _status_from_body(body)
    reason = status_obj.get("reason") or _DEFAULT_REASONS.get(status, "")
    message = status_obj.get("message") or ""
    if not message and isinstance(body, (bytes, str)) and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        message = text.strip()[:500]
    retry_after = _parse_retry_after(headers.get("Retry-After") if headers is not None else None)

    if status == 410:
        retryable = True
    elif status == 409:
        # On a write, a conflict means someone else changed the object between read and write
        # (or held a field); applying again re-reads it. Elsewhere it is an answer, not a hiccup.
        retryable = conflict_retryable
    else:
        retryable = status in _RETRYABLE_STATUSES

    if status == 422:
        user_message = _with_causes(message, status_obj) or f"The cluster '{cluster}' rejected the change."
    elif status == 401:
        user_message = f"The cluster '{cluster}' did not accept ale's credentials."
    elif status == 429:
        user_message = f"The cluster '{cluster}' is busy; ale will try again."
    elif status in (500, 502, 503, 504):
        user_message = f"The cluster '{cluster}' had a temporary failure" + (f": {message}" if message else ".")
    else:
        user_message = message or f"The cluster '{cluster}' answered {status} {reason}".strip()
    return ClusterError(
        f"{what}: {status} {reason}: {message}".rstrip(": "),
        retryable=retryable,
        status=status,
        reason=reason,
        retry_after=retry_after,
        user_message=user_message,
    )


_DEFAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    408: "Timeout",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def transport_error(cluster: str, exc: BaseException, *, what: str) -> ClusterError:
    """Map a failure below HTTP (socket, TLS, timeout, a cut stream) to a retryable error."""
    timed_out = isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout)) or (
        isinstance(exc, urllib3.exceptions.TimeoutError)
        and not isinstance(exc, urllib3.exceptions.NewConnectionError)
        and not isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
    )
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return transport_error(cluster, exc.reason, what=what)
    if timed_out:
        return ClusterError(
            f"{what}: timed out: {exc}",
            retryable=True,
            reason="Timeout",
            user_message=f"The cluster '{cluster}' did not answer in time.",
        )
    return ClusterError(
        f"{what}: {type(exc).__name__}: {exc}",
        retryable=True,
        reason="Unreachable",
        user_message=f"The cluster '{cluster}' cannot be reached.",
    )


TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)
