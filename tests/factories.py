"""Small factories: each makes one object the way the product would, through its actions."""

from __future__ import annotations

import itertools

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser

from clusters.models import Cluster
from environments.actions import create_environment
from environments.models import Environment
from spaces.actions import create_project, ensure_default_space
from spaces.models import Membership, Project, Space

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


def make_user(username: str | None = None) -> AbstractBaseUser:
    username = username or f"user{next(_counter)}"
    user = get_user_model().objects.create_user(username=username, email=f"{username}@example.com", password=PASSWORD)
    ensure_default_space(user)
    return user


def make_space(*, owner: AbstractBaseUser, members: tuple[AbstractBaseUser, ...] = (), name: str | None = None) -> Space:
    space = Space.objects.create(name=name or f"space-{next(_counter)}")
    Membership.objects.create(space=space, user=owner, role=Membership.Role.OWNER)
    for member in members:
        Membership.objects.create(space=space, user=member, role=Membership.Role.MEMBER)
    return space


def local_cluster() -> Cluster:
    # The data migrations seed it, and tests/conftest.py puts it back after every flush.
    return Cluster.objects.get(name="local")


def make_cluster(name: str | None = None) -> Cluster:
    name = name or f"cluster{next(_counter)}"
    return Cluster.objects.create(name=name, display_name=name.title(), connection=Cluster.Connection.KUBECONFIG)


def make_project(space: Space, *, by: AbstractBaseUser, name: str | None = None, display_name: str = "") -> Project:
    return create_project(
        acting_user=by, space=space, name=name or f"proj{next(_counter)}", display_name=display_name, cluster=local_cluster()
    )


def make_environment(project: Project, *, by: AbstractBaseUser, name: str | None = None) -> Environment:
    return create_environment(
        acting_user=by, project=project, name=name or f"env {next(_counter)}", cluster=local_cluster()
    )
