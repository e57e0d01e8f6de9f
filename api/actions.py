"""Creating, using and revoking API tokens."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from api import tokens
from api.models import DEFAULT_EXPIRY_DAYS, ApiToken
from services.models import Service
from spaces.models import Space

# last_used_at is written at most this often: a CI job polling every second must not turn each
# read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


@transaction.atomic
def create_token(
    acting_user: AbstractBaseUser,
    *,
    name: str,
    permission: str,
    spaces: Iterable[Space] | None,
    expires_in_days: int = DEFAULT_EXPIRY_DAYS,
) -> tuple[ApiToken, str]:
    """A token for `acting_user`; `spaces=None` means all of theirs. Returns the row and the
    token itself, which is never stored and so can be shown only now."""
    raw = tokens.new_token()
    token = ApiToken.objects.create(
        user=acting_user,
        name=name,
        permission=permission,
        all_spaces=spaces is None,
        token_hash=tokens.hash_token(raw),
        hint=raw[-4:],
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    if spaces is not None:
        token.spaces.set(spaces)
    return token, raw


@transaction.atomic
def create_deploy_key(
    acting_user: AbstractBaseUser, service: Service, *, name: str, expires_in_days: int = DEFAULT_EXPIRY_DAYS
) -> tuple[ApiToken, str]:
    """A token that may only deploy `service` and read its status (the caller checked that the
    user may act on it: the service page's access helper)."""
    raw = tokens.new_token()
    token = ApiToken.objects.create(
        user=acting_user,
        name=name,
        permission=ApiToken.Permission.DEPLOY,
        service=service,
        token_hash=tokens.hash_token(raw),
        hint=raw[-4:],
        expires_at=timezone.now() + timedelta(days=expires_in_days),
    )
    token.spaces.set([service.environment.project.space])
    return token, raw


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())


def mark_used(token: ApiToken) -> None:
    """Record use, at most once a minute per token."""
    now = timezone.now()
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_RESOLUTION:
        return
    # The condition makes concurrent requests write once between them.
    stale = now - LAST_USED_RESOLUTION
    ApiToken.objects.filter(pk=token.pk).exclude(last_used_at__gt=stale).update(last_used_at=now)
    token.last_used_at = now
