"""Who may see what in environments. Missing and not-a-member give the same answer: 404."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from environments.models import Environment


def environments_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Environment]:
    if not user.is_authenticated:
        return Environment.objects.none()
    # An environment being deleted is gone for users: only its deletion task still sees it.
    return Environment.objects.filter(project__space__memberships__user=user, deleting_at__isnull=True)


def get_environment_for_user(user: AbstractBaseUser | AnonymousUser, public_id: str) -> Environment:
    """The environment with its project, space and cluster, in one query."""
    try:
        return (
            environments_for_user(user)
            .select_related("project__space", "cluster")
            .get(public_id=public_id)
        )
    except Environment.DoesNotExist:
        raise Http404("No such environment.") from None
