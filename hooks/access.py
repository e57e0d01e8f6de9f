"""Who may see and change a project's webhook. Outsiders get 404 (through the environment);
members see that the hook exists; only owners see its secret and change its settings."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied

from environments.access import get_environment_for_user
from environments.models import Environment
from spaces.access import is_owner


def get_environment_for_owner(user: AbstractBaseUser | AnonymousUser, public_id: str) -> Environment:
    """The environment, for the owners of its space: 404 for outsiders, 403 for members."""
    environment = get_environment_for_user(user, public_id)
    if not is_owner(user, environment.project.space):
        raise PermissionDenied("Only the space's owners can change the webhook and previews.")
    return environment
