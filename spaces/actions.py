"""Workflows on spaces and projects. Views, commands and tests all go through these verbs."""

from __future__ import annotations

import re
from functools import partial

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from clusters.models import Cluster
from environments.actions import create_environment, delete_environment
from environments.models import MAIN, Environment
from spaces import audit
from spaces.models import Membership, Project, Space
from spaces.tasks import delete_space as delete_space_task


def _space_name_for(username: str) -> str:
    """A valid, unused space name derived from a username (4–20 of `a-z 0-9 - .`)."""
    base = re.sub(r"[^a-z0-9.-]+", "-", username.lower()).strip("-.") or "space"
    if len(base) < 4:
        base = f"{base}-space"
    base = base[:20]
    candidate, counter = base, 1
    while Space.objects.filter(name=candidate).exists():
        counter += 1
        suffix = f"-{counter}"
        candidate = base[: 20 - len(suffix)] + suffix
    return candidate


@transaction.atomic
def ensure_default_space(user: AbstractBaseUser) -> Space:
    """The user's default space, created (with the user as owner) when it does not exist yet."""
    space = Space.objects.filter(owner=user, is_default=True).first()
    if space is None:
        space = Space.objects.create(name=_space_name_for(user.get_username()), owner=user, is_default=True)
        Membership.objects.create(space=space, user=user, role=Membership.Role.OWNER)
    return space


@transaction.atomic
def sign_up(*, username: str, email: str, password: str) -> AbstractBaseUser:
    """Create a user account and its default space together: no user is ever without one."""
    user = get_user_model().objects.create_user(username=username, email=email, password=password)
    ensure_default_space(user)
    return user


@transaction.atomic
def create_project(
    *, acting_user: AbstractBaseUser, space: Space, name: str, display_name: str, cluster: Cluster
) -> Project:
    """Create a project with its `main` environment, which is also its default."""
    project = Project.objects.create(
        space=space, name=name, display_name=display_name or name, created_by=acting_user
    )
    main = create_environment(acting_user=acting_user, project=project, name=MAIN, cluster=cluster)
    project.default_environment = main
    project.save(update_fields=["default_environment"])
    audit.record(acting_user, space, audit.Action.PROJECT_CREATE, f"Created project {name}", project=project)
    return project


def update_project_display_name(*, acting_user: AbstractBaseUser, project: Project, display_name: str) -> Project:
    project.display_name = display_name
    project.save(update_fields=["display_name"])
    return project


# --- space settings ------------------------------------------------------------------------------


@transaction.atomic
def create_space(*, acting_user: AbstractBaseUser, name: str) -> Space:
    """A new space with the acting user as its only owner.

    `Space.owner` stays empty: it marks a user's default space, and it cascades, so setting it
    here would take a shared space down with its creator's account. Ownership is the
    membership, as for any space. No allocation row either: like a default space, a new one
    uses the `default` profile until operations allocate it something else.
    """
    space = Space(name=name, is_default=False)
    space.full_clean(validate_unique=True, validate_constraints=False)
    try:
        space.save()
    except IntegrityError:
        # Another request took the name after the check above.
        raise ValidationError({"name": "Another space has this name."}) from None
    Membership.objects.create(space=space, user=acting_user, role=Membership.Role.OWNER)
    audit.record(acting_user, space, audit.Action.SPACE_CREATE, f"Created the space {name}", details={"name": name})
    return space


@transaction.atomic
def rename_space(*, acting_user: AbstractBaseUser, space: Space, name: str) -> Space:
    space = Space.objects.select_for_update().get(pk=space.pk)
    old = space.name
    space.name = name
    space.full_clean(validate_unique=True, validate_constraints=False)
    space.save(update_fields=["name"])
    audit.record(acting_user, space, audit.Action.SPACE_RENAME, f"Renamed the space from {old} to {name}",
                 details={"from": old, "to": name})
    return space


@transaction.atomic
def delete_space(*, acting_user: AbstractBaseUser, space: Space) -> None:
    """Delete a space that is not anyone's default, with everything in it.

    Its members lose it at once (their memberships and its invitations go now); each of its
    environments is deleted like a user deleting it (the namespace first, then the rows), and
    `spaces.tasks.delete_space` removes the space's row once its last project is gone.
    """
    # Not locked: the deploy check locks an environment and then the space, so locking the
    # space before its environments here could deadlock with a deploy. Environments are locked
    # one by one by `delete_environment`, as when a user deletes them.
    space = Space.objects.get(pk=space.pk)
    if space.is_default:
        raise ValidationError("A user's default space cannot be deleted.")
    environments = Environment.objects.filter(project__space=space, deleting_at__isnull=True).select_related("project")
    for environment in environments:
        delete_environment(acting_user=acting_user, environment=environment)
    space.memberships.all().delete()
    space.invitations.all().delete()
    transaction.on_commit(partial(delete_space_task.delay, space.pk), robust=True)


# --- the team ------------------------------------------------------------------------------------


def _locked_memberships(space: Space) -> dict[int, Membership]:
    """Every membership of the space, locked, by user id: the owner count is read under the
    same locks that the change takes, so two owners cannot demote each other at once."""
    Space.objects.select_for_update().filter(pk=space.pk).first()
    return {m.user_id: m for m in Membership.objects.select_for_update().filter(space=space).select_related("user")}


def _owner_count(memberships: dict[int, Membership]) -> int:
    return sum(1 for m in memberships.values() if m.role == Membership.Role.OWNER)


@transaction.atomic
def add_member(
    *, acting_user: AbstractBaseUser | None, space: Space, user: AbstractBaseUser, role: str, via: str = "direct"
) -> Membership:
    memberships = _locked_memberships(space)
    if user.pk in memberships:
        raise ValidationError(f"{user.get_username()} is already in this space.")
    membership = Membership.objects.create(space=space, user=user, role=role)
    audit.record(
        acting_user, space, audit.Action.MEMBER_ADD, f"Added {user.get_username()} as {membership.get_role_display().lower()}",
        details={"user": user.get_username(), "role": role, "via": via},
    )
    return membership


@transaction.atomic
def change_role(*, acting_user: AbstractBaseUser, space: Space, user: AbstractBaseUser, role: str) -> Membership:
    memberships = _locked_memberships(space)
    membership = memberships.get(user.pk)
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not in this space.")
    if role not in Membership.Role.values:
        raise ValidationError("Choose owner or member.")
    if membership.role == role:
        return membership
    if membership.role == Membership.Role.OWNER and _owner_count(memberships) == 1:
        raise ValidationError("A space needs an owner: make someone else owner first.")
    old = membership.role
    membership.role = role
    membership.save(update_fields=["role"])
    audit.record(
        acting_user, space, audit.Action.MEMBER_ROLE, f"Made {user.get_username()} {membership.get_role_display().lower()}",
        details={"user": user.get_username(), "from": old, "to": role},
    )
    return membership


@transaction.atomic
def remove_member(*, acting_user: AbstractBaseUser, space: Space, user: AbstractBaseUser) -> None:
    """Take a user out of the space (an owner removing them, or they leaving)."""
    memberships = _locked_memberships(space)
    membership = memberships.get(user.pk)
    if membership is None:
        raise ValidationError(f"{user.get_username()} is not in this space.")
    if membership.role == Membership.Role.OWNER and _owner_count(memberships) == 1:
        raise ValidationError("The last owner cannot leave: make someone else owner first.")
    if space.is_default and space.owner_id == user.pk:
        # The default space is its user's for as long as the user exists.
        raise ValidationError("Nobody leaves their own default space.")
    membership.delete()
    leaving = acting_user.pk == user.pk
    audit.record(
        acting_user, space, audit.Action.MEMBER_REMOVE,
        f"{user.get_username()} left the space" if leaving else f"Removed {user.get_username()}",
        details={"user": user.get_username(), "left": leaving},
    )
