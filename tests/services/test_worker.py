"""The whole desired-state flow through a real Celery worker process, Redis and the devcluster.

Nothing here calls a task directly: the actions enqueue on commit, the worker (another process,
sharing the test database) runs the tasks, and the test watches the cluster and the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from clusters.client import client_for
from services.resync import resync_cluster
from environments.actions import delete_environment
from environments.models import Environment
from services import actions
from services.forms import ServiceForm
from services.models import Service
from spaces.actions import create_project
from spaces.models import Project
from tests.waiting import wait_for


pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def deploy(env, owner, **overrides: Any) -> Service:
    data = {
        "name": "web", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
        "memory": "64Mi", "replicas": "2", "capacity": "on_demand", **overrides,
    }
    form = ServiceForm(data, environment=env)
    assert form.is_valid(), form.errors
    return actions.deploy_service(owner, env, form.cleaned_data)


def ready_pods(kube, service: Service) -> int:
    deployment = kube.get("apps/v1", "Deployment", service.name, service.namespace) or {}
    return (deployment.get("status") or {}).get("readyReplicas") or 0


def pod_count(kube, service: Service) -> int:
    pods, _ = kube.list("v1", "Pod", namespace=service.namespace, label_selector=f"ale.dev/service={service.public_id}")
    return len([pod for pod in pods if not pod["metadata"].get("deletionTimestamp")])


def status_after_resync(cluster, service: Service) -> str:
    # What the watcher and the periodic resync write: the status observed in the cluster.
    resync_cluster(cluster)
    service.refresh_from_db()
    return service.status


def test_it_deploys_stops_starts_and_deletes_through_the_worker(celery_worker, kube_cluster, space, owner):
    kube = client_for(kube_cluster)
    project = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster)
    env = project.environments.get()
    # Creating the project's environment enqueued its namespace.
    wait_for(lambda: kube.get("v1", "Namespace", env.namespace), what="the namespace")

    web = deploy(env, owner)
    db = deploy(env, owner, name="db", kind="tcp", port="5432", replicas="1", disk="1Gi")
    wait_for(lambda: ready_pods(kube, web) == 2 and ready_pods(kube, db) == 1, what="ready pods")
    wait_for(lambda: status_after_resync(kube_cluster, web) == Service.Status.RUNNING, what="web running")

    actions.stop_service(owner, web)
    actions.stop_service(owner, db)
    wait_for(lambda: pod_count(kube, web) == 0 and pod_count(kube, db) == 0, what="no pods")
    wait_for(lambda: status_after_resync(kube_cluster, web) == Service.Status.STOPPED, what="web stopped")

    assert actions.start_all(owner, env) == 2
    wait_for(lambda: ready_pods(kube, web) == 2 and ready_pods(kube, db) == 1, what="ready pods again")

    assert delete_environment(acting_user=owner, environment=env) is None
    wait_for(lambda: not Environment.objects.filter(pk=env.pk).exists(), what="the environment row gone")
    assert kube.get("v1", "Namespace", env.namespace) is None
    assert not Project.objects.filter(pk=project.pk).exists()
    assert "Traceback" not in celery_worker.log()


def test_it_finishes_a_task_whose_worker_was_killed(start_celery_worker, fault_cluster, devcluster, space, owner):
    kube = client_for(fault_cluster)
    project = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=fault_cluster)
    env = project.environments.get()
    first = start_celery_worker()
    wait_for(lambda: kube.get("v1", "Namespace", env.namespace), what="the namespace")

    # The first worker's apply hangs on the cluster; the worker dies while it waits.
    devcluster.faults.latency(20, count=1, path="/deployments/", method="PATCH")
    service = deploy(env, owner, replicas="1")
    # A rule with a count leaves the list when a request takes it: the apply is in flight.
    wait_for(lambda: not devcluster.faults.rules(), what="the first worker's apply reaching the cluster")
    delivered_at = time.monotonic()
    assert f"reconcile_service {service.pk} " in first.log()
    first.kill()
    assert kube.get("apps/v1", "Deployment", "web", env.namespace) is None

    # Unacknowledged (acks_late), the message goes back to the queue once the visibility
    # timeout has passed; a new worker finds it there when it starts.
    time.sleep(max(0.0, delivered_at + 6 - time.monotonic()))
    second = start_celery_worker(visibility_timeout=5)
    wait_for(lambda: ready_pods(kube, service) == 1, what="the redelivered task's pod")
    assert f"reconcile_service {service.pk} " in second.log()


def worker_backends() -> dict[int, str]:
    """The other connections to this test database (the worker's): backend pid → last query."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid, query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return dict(cursor.fetchall())


ON_POSTGRESQL = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"


def worker_after_one_task(start_celery_worker) -> tuple[Callable[[int], None], dict[int, str]]:
    """A worker of one thread that has run one task: a function that runs one more and waits
    for it, and the worker's connections still open after the first."""
    from services.metrics import sample_metrics

    worker = start_celery_worker(concurrency=1)

    def run_task(number: int) -> None:
        sample_metrics.delay()
        wait_for(lambda: worker.log().count("succeeded") >= number, timeout=30, what=f"task {number} run by the worker")
        assert "raised unexpected" not in worker.log()

    run_task(1)
    kept = wait_for(worker_backends, timeout=10, what="the worker's connection, still open after its task")
    return run_task, kept


@pytest.mark.skipif(not ON_POSTGRESQL, reason="reads PostgreSQL's list of connections")
def test_a_worker_keeps_its_database_connection_from_one_task_to_the_next(start_celery_worker):
    run_task, first = worker_after_one_task(start_celery_worker)

    run_task(2)

    assert set(worker_backends()) == set(first), "the second task opened a connection of its own"


@pytest.mark.skipif(not ON_POSTGRESQL, reason="ends a connection through PostgreSQL's pg_terminate_backend")
def test_a_worker_whose_kept_connection_was_cut_opens_another_for_its_next_task(start_celery_worker):
    run_task, kept = worker_after_one_task(start_celery_worker)

    # As when the database restarts, or a proxy drops an idle connection, between two tasks.
    with connection.cursor() as cursor:
        for pid in kept:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    run_task(2)

    assert not set(worker_backends()) & set(kept)
