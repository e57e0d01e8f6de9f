"""Who a request to /api/v1/ acts as, and how far its token reaches.

A token narrows its user, never widens them: the endpoints still call each app's access helper
as the user (an outsider gets 404), and then these checks (a space outside the token's scope
is also 404; a write with a read token or a deploy key outside its service is 403).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.utils import timezone

from api import tokens
from api.models import ApiToken
from services.models import Service


class Unauthenticated(Exception):
    """No usable token: 401, with the reason in the problem's detail."""


def authenticate(header: str) -> ApiToken:
    """The token named by an `Authorization: Bearer ale_…` header, active and with its user."""
    scheme, _, raw = header.strip().partition(" ")
    raw = raw.strip()
    if scheme.lower() != "bearer" or not raw:
        raise Unauthenticated("Send a token as 'Authorization: Bearer ale_…'.")
    if not tokens.is_well_formed(raw):
        # Refused before any database lookup: a typo or a token of another system.
        raise Unauthenticated("This is not an ale API token: check that it was copied whole.")
    digest = tokens.hash_token(raw)
    token = ApiToken.objects.select_related("user", "service").filter(token_hash=digest).first()
    if token is None or not hmac.compare_digest(token.token_hash, digest):
        raise Unauthenticated("This token does not exist.")
    if token.revoked_at is not None:
        raise Unauthenticated("This token was revoked.")
    if token.expires_at <= timezone.now():
        raise Unauthenticated("This token has expired.")
    if not token.user.is_active:
        raise Unauthenticated("This token's user is deactivated.")
    return token


def space_ids_in_scope(token: ApiToken) -> set[int] | None:
    """The spaces a token is limited to, or None when it reaches all of its user's."""
    if token.all_spaces:
        return None
    if not hasattr(token, "_space_ids"):
        token._space_ids = set(token.spaces.values_list("pk", flat=True))  # type: ignore[attr-defined]
    return token._space_ids  # type: ignore[attr-defined]


def check_space(token: ApiToken, space_id: int) -> None:
    """A space outside the token's scope is as invisible as a space of another user."""
    scope = space_ids_in_scope(token)
    if scope is not None and space_id not in scope:
        raise Http404("Not found.")


def check_not_deploy_key(token: ApiToken) -> None:
    if token.is_deploy_key:
        raise PermissionDenied("A deploy key may only deploy its service and read its status.")


def check_deploy_key_service(token: ApiToken, service_public_id: str) -> None:
    """A deploy key reaches only its own service."""
    if token.is_deploy_key and token.service.public_id != service_public_id:  # type: ignore[union-attr]
        raise PermissionDenied("A deploy key may only deploy its service and read its status.")


# What a deploy key may change: the image of an image service, the branch of a Git service.
DEPLOY_KEY_FIELDS = frozenset({"image", "branch"})


def check_deploy_key_fields(fields: Iterable[str]) -> None:
    others = sorted(set(fields) - DEPLOY_KEY_FIELDS)
    if others:
        raise PermissionDenied(
            f"A deploy key may only change the image or the branch, not {', '.join(others)}: use a token with the deploy permission."
        )


def check_write(token: ApiToken) -> None:
    if not token.may_write:
        raise PermissionDenied("This token may only read: create a token with the deploy permission.")


def service_space_id(service: Service) -> int:
    return service.environment.project.space_id
