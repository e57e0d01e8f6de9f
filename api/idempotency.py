"""`Idempotency-Key` on creating POSTs: a retried request gets the first answer again instead
of creating a second service, revision or environment."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Status

from api import problems
from api.models import ApiToken, IdempotentResponse

MAX_KEY_LENGTH = 255
# A retry comes within minutes; a day covers a CI pipeline re-run by hand the next morning.
KEEP = timedelta(days=1)


def _fingerprint(request: HttpRequest) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, request.body):
        digest.update(part if isinstance(part, bytes) else part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def _replay(saved: IdempotentResponse, fingerprint: str) -> HttpResponse:
    if saved.fingerprint != fingerprint:
        raise problems.Problem(
            422, "This Idempotency-Key was used for a different request: use a new key for a new request.",
            errors=[{"field": "Idempotency-Key", "code": "reused", "message": "The key was used for a different request."}],
        )
    reply = _json(saved.status, saved.body)
    reply["Idempotent-Replayed"] = "true"
    return reply


def _json(status: int, body: Any) -> HttpResponse:
    # The first answer and its replays byte for byte the same: both rendered here.
    return HttpResponse(json.dumps(body), status=status, content_type="application/json")


def once(request: HttpRequest, token: ApiToken, status: int, create: Callable[[], Any]) -> Any:
    """Run `create` (returning a JSON-able body) once per key; without a key, every time.

    The answer is stored in the transaction that creates, so either both exist or neither.
    """
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        return Status(status, create())
    if len(key) > MAX_KEY_LENGTH:
        raise problems.Problem(422, f"An Idempotency-Key is at most {MAX_KEY_LENGTH} characters.")
    fingerprint = _fingerprint(request)
    # Old answers go as the token makes new ones: no table grows without end, no task needed.
    IdempotentResponse.objects.filter(token=token, created_at__lt=timezone.now() - KEEP).delete()
    saved = IdempotentResponse.objects.filter(token=token, key=key).first()
    if saved is not None:
        return _replay(saved, fingerprint)
    try:
        with transaction.atomic():
            body = create()
            IdempotentResponse.objects.create(token=token, key=key, fingerprint=fingerprint, status=status, body=body)
    except IntegrityError:
        # The same key sent twice at once: the other request created; answer as it did.
        saved = IdempotentResponse.objects.filter(token=token, key=key).first()
        if saved is None:
            raise
        return _replay(saved, fingerprint)
    return _json(status, body)
