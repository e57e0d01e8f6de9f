"""Deletions whose task was lost or gave up: the periodic resync hands them to a real Celery
worker again, once per period, and leaves a deletion that is still young to its own task."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone

from clusters.client import client_for
from services.resync import resync_cluster
from environments.models import Environment
from services.models import Service
from spaces.actions import create_project
from spaces.models import Project
from tests.services.test_worker import deploy
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

LONG_AGO = timedelta(hours=2)


@pytest.fixture
def env(celery_worker, kube_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    wait_for(lambda: client_for(kube_cluster).get("v1", "Namespace", environment.namespace), what="the namespace")
    return environment


def lose_environment_deletion(environment: Environment, started) -> None:
    # What `delete_environment` marks, without the task it enqueues: a broker that was down, a
    # task that gave up on an unreachable cluster.
    Environment.objects.filter(pk=environment.pk).update(deleting_at=started)


def test_it_deletes_again_an_environment_whose_deletion_was_lost(env, kube_cluster, celery_worker):
    kube = client_for(kube_cluster)
    lose_environment_deletion(env, timezone.now() - LONG_AGO)
    assert kube.get("v1", "Namespace", env.namespace) is not None

    _, requeued = resync_cluster(kube_cluster)
    assert requeued == 1
    wait_for(lambda: not Environment.objects.filter(pk=env.pk).exists(), what="the environment row gone")
    assert kube.get("v1", "Namespace", env.namespace) is None
    # It was the project's only environment: the project goes with it, as for any deletion.
    assert not Project.objects.filter(pk=env.project_id).exists()
    assert "Traceback" not in celery_worker.log()


def test_it_starts_a_stuck_deletion_once_per_period_and_leaves_a_young_one_alone(env, kube_cluster, celery_worker):
    kube = client_for(kube_cluster)
    # Still within the deletion task's own polling: not touched.
    lose_environment_deletion(env, timezone.now() - timedelta(minutes=10))
    assert resync_cluster(kube_cluster)[1] == 0
    assert kube.get("v1", "Namespace", env.namespace) is not None

    # Past the period: started again, and the period starts over, so the next resync (a
    # minute later, or another worker's at the same time) does not start a second task.
    lose_environment_deletion(env, timezone.now() - LONG_AGO)
    assert resync_cluster(kube_cluster)[1] == 1
    assert resync_cluster(kube_cluster)[1] == 0
    wait_for(lambda: not Environment.objects.filter(pk=env.pk).exists(), what="the environment row gone")
    assert celery_worker.log().count(f"delete_environment {env.pk} ") >= 1


def test_it_deletes_again_a_service_whose_deletion_was_lost(env, kube_cluster, owner, celery_worker):
    kube = client_for(kube_cluster)
    service = deploy(env, owner, replicas="1")
    wait_for(lambda: kube.get("apps/v1", "Deployment", "web", env.namespace), what="the Deployment")
    # What `delete_service` marks, without its reconcile.
    Service.objects.filter(pk=service.pk).update(
        status=Service.Status.DELETING,
        desired_state=Service.DesiredState.STOPPED,
        generation=F("generation") + 1,
        status_changed_at=timezone.now() - LONG_AGO,
    )

    _, requeued = resync_cluster(kube_cluster)
    assert requeued == 1
    wait_for(lambda: not Service.objects.filter(pk=service.pk).exists(), what="the service row gone")
    assert kube.get("apps/v1", "Deployment", "web", env.namespace) is None
    assert kube.get("v1", "Service", "web", env.namespace) is None
    # The environment is untouched.
    assert kube.get("v1", "Namespace", env.namespace) is not None
