"""Errors as `application/problem+json` (RFC 9457): a title, a status, a detail, and for bad
input the fields with the rule each broke, worded as the forms word it."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.http import HttpResponse

CONTENT_TYPE = "application/problem+json"

TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    422: "Invalid input",
    429: "Too many requests",
    502: "The cluster did not answer",
}


class Problem(Exception):
    def __init__(
        self, status: int, detail: str, *, errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.headers = headers or {}


def response(status: int, detail: str, *, errors: list[dict[str, Any]] | None = None,
             headers: dict[str, str] | None = None) -> HttpResponse:
    body: dict[str, Any] = {"type": "about:blank", "title": TITLES.get(status, "Error"), "status": status, "detail": detail}
    if errors:
        body["errors"] = errors
    reply = HttpResponse(json.dumps(body), status=status, content_type=CONTENT_TYPE)
    for name, value in (headers or {}).items():
        reply[name] = value
    return reply


def from_form(form: forms.Form) -> Problem:
    """A form's errors, field by field: `field` is null for a rule across fields."""
    errors = [
        {"field": None if field == "__all__" else field, "code": error.get("code") or "invalid", "message": error["message"]}
        for field, items in form.errors.get_json_data().items()
        for error in items
    ]
    first = errors[0]
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return Problem(422, detail, errors=errors)


def from_validation_error(error: ValidationError) -> Problem:
    """An action's refusal (the service is being deleted, a quota): a rule, not a field."""
    messages = list(error.messages)
    return Problem(422, " ".join(messages), errors=[{"field": None, "code": "refused", "message": m} for m in messages])
