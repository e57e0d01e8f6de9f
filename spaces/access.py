"""Who may see what in spaces. Missing and not-a-member give the same answer: 404."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import Http404

from spaces.models import Membership, Project, Space


def spaces_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Space]:
    """Every space the user is a member of, default space first."""
    if not user.is_authenticated:
        return Space.objects.none()
    # The owner: the sidebar names whose default space another user's is.
    return Space.objects.filter(memberships__user=user).select_related("owner").order_by("-is_default", "name")


def projects_for_user(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Project]:
    if not user.is_authenticated:
        return Project.objects.none()
    return Project.objects.filter(space__memberships__user=user)


def live_projects(space: Space) -> QuerySet[Project]:
    """The space's projects with `environment_count`, leaving out those being deleted.

    A project whose environments are all being deleted goes when the last namespace does.
    """
    return (
        space.projects.annotate(
            environment_count=Count("environments", filter=Q(environments__deleting_at__isnull=True))
        )
        .filter(environment_count__gt=0)
        .order_by("name")
    )


def get_space_for_user(user: AbstractBaseUser | AnonymousUser, public_id: str) -> Space:
    try:
        return spaces_for_user(user).get(public_id=public_id)
    except Space.DoesNotExist:
        raise Http404("No such space.") from None


def get_project_for_user(user: AbstractBaseUser | AnonymousUser, public_id: str) -> Project:
    try:
        return projects_for_user(user).select_related("space").get(public_id=public_id)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def get_project_by_handle_for_user(
    user: AbstractBaseUser | AnonymousUser, space_name: str, project_name: str
) -> Project:
    """The project addressed as `@space_name/project_name`."""
    try:
        return projects_for_user(user).select_related("space").get(space__name=space_name, name=project_name)
    except Project.DoesNotExist:
        raise Http404("No such project.") from None


def is_owner(user: AbstractBaseUser | AnonymousUser, space: Space) -> bool:
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(space=space, user=user, role=Membership.Role.OWNER).exists()


def get_space_for_owner(user: AbstractBaseUser | AnonymousUser, public_id: str) -> Space:
    """The space, for its owners only.

    An outsider gets 404, as everywhere. A member gets 403: they know the space exists (it is
    in their sidebar), so hiding it would only be confusing; what they lack is the right.
    """
    space = get_space_for_user(user, public_id)
    if not is_owner(user, space):
        raise PermissionDenied("Only the space's owners can do this.")
    return space
