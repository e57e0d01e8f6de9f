"""A person's click overtakes bulk work already queued: a real worker, Redis and the devcluster."""

from __future__ import annotations

import pytest
from django.db import transaction

from clusters.client import client_for
from services import actions, lifecycle, queue
from services.models import Service
from spaces.actions import create_project
from tests.services.test_apply_writes import spec
from tests.services.test_tasks import deploy
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

BATCH = 60


def test_it_stops_a_service_ahead_of_a_bulk_reconcile_already_queued(
    start_celery_worker, fault_cluster, devcluster, space, owner
):
    project = create_project(acting_user=owner, space=space, name="busy", display_name="", cluster=fault_cluster)
    env = project.environments.get()
    target = deploy(env, owner, name="target", replicas="1")
    with transaction.atomic():
        # Rows only: the bulk reconcile below is what carries them to the cluster.
        batch = [lifecycle.create(env, f"s{index:02d}", spec(env)) for index in range(BATCH)]
    kube = client_for(fault_cluster)
    # One slot: what it takes next is decided by the queue alone.
    worker = start_celery_worker(concurrency=1)
    wait_for(lambda: kube.get("apps/v1", "Deployment", "target", env.namespace), what="the target's Deployment", timeout=30)
    # Slow enough that the bulk work is still going when the click comes.
    devcluster.faults.latency(0.2, path="/deployments/", method="PATCH")
    devcluster.writes.clear()
    prefix = f"/apis/apps/v1/namespaces/{env.namespace}/deployments/"

    def deployment_writes() -> list[str]:
        return [path.removeprefix(prefix) for method, path, _ in devcluster.writes.log() if path.startswith(prefix) and method == "PATCH"]

    queue.send(queue.RECONCILE_ENVIRONMENT, env.pk, [service.pk for service in batch])
    wait_for(deployment_writes, what="the bulk reconcile's first Deployment", timeout=30)
    actions.stop_service(owner, target)
    wait_for(lambda: "target" in deployment_writes(), what="the stopped service's Deployment written", timeout=60)
    wait_for(lambda: len(deployment_writes()) >= BATCH + 1, what="every Deployment of the batch", timeout=120)
    written = deployment_writes()

    later = len(written) - written.index("target") - 1
    assert later >= BATCH // 3, f"the Stop waited behind the bulk work: only {later} of {BATCH} were written after it"
    assert kube.get("apps/v1", "Deployment", "target", env.namespace)["spec"]["replicas"] == 0
    assert Service.objects.get(pk=target.pk).applied_hashes
    assert "Traceback" not in worker.log()
