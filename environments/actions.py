"""Workflows on environments. Views, commands and tests all go through these verbs."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from clusters.models import Cluster
from environments.colors import next_color
from environments.models import MAIN, Environment
from spaces.models import Project


def _lock(project: Project) -> Project:
    # Serialises work on one project's environments, so that two requests can neither pick the
    # same colour nor both delete "the last" environment.
    return Project.objects.select_for_update().get(pk=project.pk)


@transaction.atomic
def create_environment(
    *, acting_user: AbstractBaseUser, project: Project, name: str, cluster: Cluster
) -> Environment:
    _lock(project)
    if name.lower() == MAIN:
        color = ""
    else:
        color = next_color(Environment.objects.filter(project=project).values_list("color", flat=True))
    return Environment.objects.create(
        project=project, name=name, cluster=cluster, color=color, created_by=acting_user
    )


def rename_environment(*, acting_user: AbstractBaseUser, environment: Environment, name: str) -> Environment:
    # The colour stays: users learn an environment by its colour, not by its name.
    environment.name = name
    environment.save(update_fields=["name"])
    return environment


def set_default_environment(*, acting_user: AbstractBaseUser, environment: Environment) -> Environment:
    project = environment.project
    project.default_environment = environment
    project.save(update_fields=["default_environment"])
    return environment


@transaction.atomic
def delete_environment(*, acting_user: AbstractBaseUser, environment: Environment) -> Project | None:
    """Delete the environment; when it is the project's only one, delete the project too.

    Returns the project when it remains, None when it went with its last environment.
    """
    project = _lock(environment.project)
    remaining = Environment.objects.filter(project=project).exclude(pk=environment.pk)
    if not remaining.exists():
        project.delete()
        return None
    deleted_pk = environment.pk
    environment.delete()
    if project.default_environment_id in (None, deleted_pk):
        # The project must still open somewhere: `main` when it exists, else the oldest.
        project.default_environment = remaining.filter(name__iexact=MAIN).first() or remaining.first()
        project.save(update_fields=["default_environment"])
    return project
