"""Workflows on environments. Views, commands and tests all go through these verbs."""

from __future__ import annotations

from functools import partial

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from clusters.models import Cluster
from environments.colors import next_color
from environments.models import MAIN, Environment
from environments.tasks import delete_environment as delete_environment_task
from environments.tasks import reconcile_environment
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
    environment = Environment.objects.create(
        project=project, name=name, cluster=cluster, color=color, created_by=acting_user
    )
    # The namespace exists before the first deploy, and an empty environment is isolated too.
    transaction.on_commit(partial(reconcile_environment.delay, environment.pk), robust=True)
    return environment


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
    """Mark the environment as being deleted and start the task that deletes its namespace,
    then its row. When it is the project's last environment, the project goes too.

    Returns the project when it remains, None when it goes with its last environment.
    """
    project = _lock(environment.project)
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    if environment.deleting_at is None:
        environment.deleting_at = timezone.now()
        # The colour is free at once: a new environment may take it while this one goes.
        environment.color = ""
        environment.save(update_fields=["deleting_at", "color"])
    # robust: the mark is committed either way; a broker outage must not fail the request.
    transaction.on_commit(partial(delete_environment_task.delay, environment.pk), robust=True)
    # Environments already going do not keep the project alive.
    remaining = Environment.objects.filter(project=project, deleting_at__isnull=True).exclude(pk=environment.pk)
    if not remaining.exists():
        return None
    if project.default_environment_id in (None, environment.pk):
        # The project must still open somewhere: `main` when it exists, else the oldest.
        project.default_environment = remaining.filter(name__iexact=MAIN).first() or remaining.first()
        project.save(update_fields=["default_environment"])
    return project
