"""Workflows on spaces and projects. Views, commands and tests all go through these verbs."""

from __future__ import annotations

import re

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from clusters.models import Cluster
from environments.actions import create_environment
from environments.models import MAIN
from spaces import audit
from spaces.models import Membership, Project, Space


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
