"""Inviting people into a space: at once when they have an account, by a link when they do not.

The link carries a token; only its SHA-256 is stored. The token is an HMAC of the invitation's
row under SECRET_KEY, so the server can show the link again to the space's owners (the Team
page's "Copy link", for an install whose e-mail goes nowhere but the server's output) while a
database dump alone still opens no space. A token opens one membership: it is spent on
acceptance, and refused once it has expired or been revoked. Rotating SECRET_KEY leaves the
e-mailed links working (their hashes are stored) but the Team page can no longer show them.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from datetime import timezone as dt_timezone

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from spaces import audit
from spaces.actions import add_member, sign_up
from spaces.models import Invitation, Membership, Space

INVITATION_LIFETIME = timedelta(days=7)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


_TOKEN_SALT = "ale.spaces.invitation"


def _token_for(invitation: Invitation) -> str:
    """The link's token, derived from the saved row: the same every time it is asked for."""
    created = invitation.created_at.astimezone(dt_timezone.utc).strftime("%Y%m%d%H%M%S%f")
    value = f"{invitation.pk}:{invitation.space_id}:{invitation.email}:{created}"
    return salted_hmac(_TOKEN_SALT, value, algorithm="sha256").hexdigest()


def link_for(invitation: Invitation, base_url: str) -> str:
    """The invitation's link again, for its space's owners; "" when it cannot be rebuilt (an
    invitation from before links were derived, or SECRET_KEY has changed since)."""
    token = _token_for(invitation)
    if not secrets.compare_digest(hash_token(token), invitation.token_hash):
        return ""
    return invitation_url(base_url, token)


def reference(invitation: Invitation) -> str:
    """How URLs name an invitation to revoke it: part of the hash, never the token."""
    return invitation.token_hash[:16]


@dataclass
class InviteResult:
    membership: Membership | None = None
    invitation: Invitation | None = None
    # Only here, and only right after inviting: what the e-mail's link holds.
    token: str = ""


def _existing_user(who: str) -> AbstractBaseUser | None:
    User = get_user_model()
    user = User.objects.filter(username__iexact=who).first()
    if user is None and "@" in who:
        user = User.objects.filter(email__iexact=who).order_by("pk").first()
    return user


def invitation_url(base_url: str, token: str) -> str:
    return base_url.rstrip("/") + reverse("spaces:invitation", args=[token])


def invite(
    *, acting_user: AbstractBaseUser, space: Space, who: str, role: str, base_url: str
) -> InviteResult:
    """Invite `who` (a username or an e-mail address) with `role`.

    A user with that username or e-mail joins now; any other e-mail address gets a link to sign
    up and join. A username nobody has is refused: there is nobody to send anything to.
    """
    who = who.strip()
    if role not in Membership.Role.values:
        raise ValidationError("Choose owner or member.")
    user = _existing_user(who)
    if user is not None:
        return InviteResult(membership=add_member(acting_user=acting_user, space=space, user=user, role=role, via=who))
    try:
        validate_email(who)
    except ValidationError:
        raise ValidationError(f"Nobody has the username {who}. Invite them by e-mail address instead.") from None
    with transaction.atomic():
        # The token derives from the saved row, so the row is written first with a random
        # placeholder (the column is unique) that no token hashes to.
        invitation = Invitation.objects.create(
            space=space,
            email=who,
            role=role,
            token_hash=secrets.token_hex(32),
            invited_by=acting_user,
            expires_at=timezone.now() + INVITATION_LIFETIME,
        )
        token = _token_for(invitation)
        invitation.token_hash = hash_token(token)
        invitation.save(update_fields=["token_hash"])
        audit.record(
            acting_user, space, audit.Action.INVITATION_SEND, f"Invited {who} as {invitation.get_role_display().lower()}",
            details={"email": who, "role": role},
        )
        link = invitation_url(base_url, token)
        # After the commit: a failed transaction sends nothing, and a mail server that is down
        # does not undo the invitation (the owner sees it pending and can invite again).
        transaction.on_commit(lambda: _send(invitation, acting_user, link), robust=True)
    return InviteResult(invitation=invitation, token=token)


def _send(invitation: Invitation, inviter: AbstractBaseUser, link: str) -> None:
    days = INVITATION_LIFETIME.days
    send_mail(
        subject=f"Join {invitation.space.name} on ale",
        message=(
            f"{inviter.get_username()} invites you to the space {invitation.space.name} on ale.\n\n"
            f"Sign up and join with this link (valid for {days} days, once):\n{link}\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[invitation.email],
    )


def find(token: str) -> Invitation | None:
    """The invitation the token opens, if it still may be used."""
    invitation = Invitation.objects.select_related("space", "invited_by").filter(token_hash=hash_token(token)).first()
    if invitation is None or not invitation.is_pending:
        return None
    return invitation


def _spend(invitation_id: int, user: AbstractBaseUser) -> Invitation:
    invitation = Invitation.objects.select_for_update().select_related("space").get(pk=invitation_id)
    if not invitation.is_pending:
        raise ValidationError("This invitation has already been used, has expired or was revoked.")
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    space = invitation.space
    if not Membership.objects.filter(space=space, user=user).exists():
        add_member(acting_user=user, space=space, user=user, role=invitation.role, via="invitation")
    audit.record(user, space, audit.Action.INVITATION_ACCEPT, f"{user.get_username()} accepted the invitation for {invitation.email}",
                 details={"email": invitation.email, "role": invitation.role})
    return invitation


@transaction.atomic
def accept(*, token: str, user: AbstractBaseUser) -> Invitation:
    """Spend the invitation for a signed-in user: they join its space."""
    invitation = Invitation.objects.filter(token_hash=hash_token(token)).first()
    if invitation is None:
        raise ValidationError("This invitation does not exist.")
    return _spend(invitation.pk, user)


@transaction.atomic
def sign_up_and_accept(*, token: str, username: str, email: str, password: str) -> AbstractBaseUser:
    """A new account and its membership together: a refused invitation creates no account."""
    invitation = Invitation.objects.filter(token_hash=hash_token(token)).first()
    if invitation is None:
        raise ValidationError("This invitation does not exist.")
    user = sign_up(username=username, email=email, password=password)
    _spend(invitation.pk, user)
    return user


@transaction.atomic
def revoke(*, acting_user: AbstractBaseUser, invitation: Invitation) -> None:
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        return
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record(acting_user, invitation.space_id, audit.Action.INVITATION_REVOKE, f"Revoked the invitation for {invitation.email}",
                 details={"email": invitation.email})
