"""The periodic resync (Celery beat) that keeps the observed side honest.

`resync` lists what the watcher watches and repairs whatever a watch missed, with the same
derivation and the same writer (`services.observed`). It re-enqueues the reconcile of a service
that has been `deploying` for long with no Deployment in its cluster, or `deleting` for long (a
lost task, a broker that was down when the action committed), and the deletion of an
environment whose deletion task gave up or was lost.

Apart from `services/tasks.py`, which holds the desired-state tasks: everything here only reads
clusters, never writes them. Loaded by the worker through `CELERY_IMPORTS`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from clusters.client import client_for
from clusters.errors import ClusterError
from clusters.models import Cluster
from clusters.labels import BUILD_LABEL, BUILD_SELECTOR, MANAGED_BY_SELECTOR
from clusters.state import DEPLOYMENTS, EVENTS, JOBS, PODS, Changes, ClusterState
from environments.models import Environment
from services import queue
from services.models import Build, Service
from services.observed import services_to_derive, write_changes

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=True)
def resync() -> dict[str, int]:
    """Resync every cluster that has environments; one that cannot be reached is skipped
    (the next run, a minute later, is its retry)."""
    totals = {"clusters": 0, "changed": 0, "requeued": 0, "unreachable": 0}
    for cluster in Cluster.objects.filter(environments__isnull=False).distinct():
        try:
            changed, requeued = resync_cluster(cluster)
        except ClusterError as exc:
            totals["unreachable"] += 1
            logger.warning("resync of cluster %s skipped: %s", cluster.name, exc)
            continue
        totals["clusters"] += 1
        totals["changed"] += changed
        totals["requeued"] += requeued
    return totals


def resync_cluster(cluster: Cluster) -> tuple[int, int]:
    """Repair the statuses of one cluster's services; returns (changed, re-enqueued)."""
    # Read before listing: a status the watcher writes after this read makes the
    # compare-and-set below fail, so an older list never overwrites a newer observation.
    services = services_to_derive(cluster.pk, Changes(all_services=True))
    kube = client_for(cluster)
    state = ClusterState()
    deployments, _ = kube.list("apps/v1", "Deployment", label_selector=MANAGED_BY_SELECTOR)
    pods, _ = kube.list("v1", "Pod", label_selector=MANAGED_BY_SELECTOR)
    # Only Warnings: they are what a status depends on (a quota refusal), and storing them
    # here also repairs the Events tab for what matters most.
    warnings, _ = kube.list("v1", "Event", field_selector="type=Warning")
    state.replace(DEPLOYMENTS, deployments)
    state.replace(PODS, pods)
    # Build Jobs: a build whose end the watcher missed is handed to finish_build.
    jobs, _ = kube.list("batch/v1", "Job", label_selector=BUILD_SELECTOR)
    state.replace(EVENTS, warnings)
    state.replace(JOBS, jobs)
    result = write_changes(cluster.pk, state, state.take_changes(), services=services)
    requeued = _requeue_stuck(services, state) + _requeue_stuck_builds(cluster, jobs) + _requeue_stuck_deletions(cluster)
    if result.changed or requeued:
        logger.info(
            "resync of cluster %s: %d status(es) repaired, %d reconcile(s) re-enqueued",
            cluster.name,
            len(result.changed),
            requeued,
        )
    return len(result.changed), requeued


def _requeue_stuck(services: list[Service], state: ClusterState) -> int:
    threshold = timezone.now() - timedelta(seconds=settings.SERVICE_STUCK_DEPLOY_SECONDS)
    stuck = [
        service
        for service in services
        if (service.status_changed_at or service.created_at) < threshold
        and not service.environment.is_deleting
        and (
            # A deletion's reconcile that failed marks the service failed: one still deleting
            # has no task working on it.
            service.status == Service.Status.DELETING
            or (
                service.status == Service.Status.DEPLOYING
                and service.desired_state == Service.DesiredState.RUNNING
                and state.observed(service.public_id)[0] is None
            )
        )
    ]
    for service in stuck:
        logger.warning(
            "service %s (%s/%s) %s since %s: reconciling again",
            service.pk,
            service.environment.namespace,
            service.name,
            "deleting" if service.status == Service.Status.DELETING else "deploying with no Deployment",
            service.status_changed_at,
        )
        # Forced: its objects are missing although the digests say they were applied (deleted
        # by hand, a namespace recreated); a reconcile that trusted them would write nothing.
        queue.on_commit(queue.RECONCILE_SERVICE, service.pk, service.generation, True)
    return len(stuck)


def _requeue_stuck_builds(cluster: Cluster, jobs: list[dict]) -> int:
    """Builds queued for long (their `run_build` was lost) run again; builds running with no
    Job left in the cluster go to `finish_build`, which records why they ended."""
    threshold = timezone.now() - timedelta(seconds=settings.SERVICE_STUCK_DEPLOY_SECONDS)
    listed = {((job.get("metadata") or {}).get("labels") or {}).get(BUILD_LABEL) for job in jobs}
    stuck = Build.objects.filter(
        service__environment__cluster=cluster, status__in=Build.ACTIVE, created_at__lt=threshold
    ).values_list("pk", "public_id", "status")
    count = 0
    for pk, public_id, status in stuck:
        if status == Build.Status.QUEUED:
            queue.on_commit(queue.RUN_BUILD, pk)
        elif public_id not in listed:
            queue.on_commit(queue.FINISH_BUILD, pk)
        else:
            continue
        logger.warning("build %s (%s) stuck %s: handing it on", pk, public_id, status)
        count += 1
    return count


def _requeue_stuck_deletions(cluster: Cluster) -> int:
    """Environments still being deleted long after their deletion started: the task gave up
    (the cluster was unreachable, or the namespace stayed terminating past its polls) or was
    lost. Each gets the task again, once: `deleting_at` moves to now with a compare-and-set, so
    two resyncs never both start it and the next try waits a whole period again."""
    now = timezone.now()
    threshold = now - timedelta(seconds=settings.ENVIRONMENT_STUCK_DELETE_SECONDS)
    count = 0
    for pk, started in Environment.objects.filter(cluster=cluster, deleting_at__lt=threshold).values_list("pk", "deleting_at"):
        if Environment.objects.filter(pk=pk, deleting_at=started).update(deleting_at=now):
            logger.warning("environment %s being deleted since %s: deleting again", pk, started)
            queue.on_commit(queue.DELETE_ENVIRONMENT, pk)
            count += 1
    return count
