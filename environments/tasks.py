"""Celery tasks that carry an environment to its cluster (its namespace, its deletion), and the
hourly pruning of its old events."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from clusters.client import client_for
from clusters.errors import ClusterError
from environments.models import ClusterEvent, Environment
from services import apply, live, queue
from services.models import Service
from services.tasks import MAX_RETRIES, retry_or_give_up
from spaces.models import Project

logger = logging.getLogger(__name__)

# A namespace stays Terminating while the cluster deletes what is in it: minutes, on a busy
# cluster. Polls back off to this interval and give up after about half an hour; the
# environment then stays marked as being deleted for the periodic resync to try again.
DELETE_POLL_MAX_SECONDS = 60
DELETE_MAX_POLLS = 40


def _environment(environment_id: int) -> Environment | None:
    return Environment.objects.select_related("project__space", "cluster").filter(pk=environment_id).first()


def _publish_cards(environment: Environment, service_ids: list[int]) -> None:
    """The cards of the services a bulk transition wrote, in one trip: the transition's request
    does not render them (300 cards are most of its time)."""
    services = list(
        Service.objects.filter(environment=environment, pk__in=service_ids).select_related(
            "environment__project__space", "environment__cluster", "deployed_by"
        )
    )
    with transaction.atomic():
        live.publish_services(services)


def chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# Services per `reconcile_services`: a chunk keeps a worker slot under a second, after which a
# person's click waiting in the queue goes first.
CHUNK_SIZE = 10
# The same for the first pass of a big batch, which applies only the workloads (the Deployment,
# its disk): twice as many services a chunk, which takes about as long.
WORKLOADS_CHUNK_SIZE = 20


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def reconcile_environment(self: Task, environment_id: int, service_ids: list[int] | None = None) -> str:
    """Apply the environment's Namespace, isolation policy, variables Secret, quota and firewall
    (nothing, when unchanged since the last apply).

    `service_ids` (a bulk transition: Start All, a YAML apply, a clone): services to carry to the
    cluster with it, so that writing hundreds of services enqueues one task on commit. They are
    applied in chunks (`reconcile_services`), as bulk work that a person's click overtakes; with
    more than one chunk, a first pass over all of them starts the pods (the workloads) before a
    second applies everything else. Their cards are published once the chunks are queued: the
    first chunks apply while this renders them, and a page never lets an older card replace a
    newer one (static/js/services.js).
    """
    environment = _environment(environment_id)
    if environment is None:
        return "gone"
    what = f"reconcile_environment {environment.pk} ({environment.namespace})"
    logger.info("%s: attempt %d", what, self.request.retries + 1)
    if environment.is_deleting:
        return "deleting"
    service_ids = list(service_ids or [])
    # The transition's cards go out once, from the first attempt.
    cards_due = bool(service_ids) and self.request.retries == 0
    result = "applied"
    # Handed to the chunks: while it holds, they do not look at the environment's objects again
    # (None: they do, and show a failure on their cards).
    applied = None
    try:
        salt = apply.cluster_salt(environment.cluster)
        apply.apply_environment(client_for(environment.cluster), environment, salt=salt)
        applied = apply.applied_token(environment, salt)
    except ClusterError as exc:
        if cards_due:
            # The page shows the transition while the cluster is waited for.
            _publish_cards(environment, service_ids)
            cards_due = False
        # The environment has no status of its own: its services' reconciles apply the same
        # objects first and show the failure on their cards.
        retry_or_give_up(self, exc, what, lambda reason: None)
        result = "failed"
    batch = chunks(service_ids, CHUNK_SIZE)
    if len(batch) > 1:
        # Every service's pods first, then their Services and Ingresses: the pods of the last
        # chunk start seconds earlier, and the cluster makes them ready while the rest is applied.
        for chunk in chunks(service_ids, WORKLOADS_CHUNK_SIZE):
            queue.send(queue.RECONCILE_SERVICES, environment.pk, chunk, True, applied)
    for chunk in batch:
        queue.send(queue.RECONCILE_SERVICES, environment.pk, chunk, False, applied)
    if cards_due:
        _publish_cards(environment, service_ids)
    return result


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=DELETE_MAX_POLLS)
def delete_environment(self: Task, environment_id: int) -> str:
    """Delete the namespace, wait until the cluster has removed it, then delete the row, and
    the project when this was its last environment."""
    environment = _environment(environment_id)
    if environment is None:
        return "gone"
    what = f"delete_environment {environment.pk} ({environment.namespace})"
    logger.info("%s: attempt %d", what, self.request.retries + 1)
    if not environment.is_deleting:
        # Only what a user asked to delete: never a namespace because a stray task said so.
        logger.warning("%s: the environment is not being deleted; nothing done", what)
        return "not deleting"
    try:
        kube = client_for(environment.cluster)
        kube.delete_namespace(environment.namespace)
        remaining = kube.get("v1", "Namespace", environment.namespace)
    except ClusterError as exc:
        retry_or_give_up(self, exc, what, lambda reason: None)
        return "failed"
    if remaining is not None:
        if self.request.retries >= self.max_retries:
            logger.error("%s: the namespace is still there after %d polls", what, self.request.retries + 1)
            return "still terminating"
        delay = min(2**self.request.retries, DELETE_POLL_MAX_SECONDS)
        logger.info("%s: the namespace is terminating; next look in %d s", what, delay)
        raise self.retry(countdown=delay)
    with transaction.atomic():
        # Locked like the actions lock it, so that "was it the last one" has one answer.
        project = Project.objects.select_for_update().get(pk=environment.project_id)
        environment.delete()
        if not project.environments.exists():
            project.delete()
            logger.info("%s: deleted, with its project %s", what, project.pk)
            return "deleted with project"
    logger.info("%s: deleted", what)
    return "deleted"


# Events past the retention period: in batches, since one huge DELETE holds SQLite's single
# write lock for too long.
PRUNE_BATCH = 5000


@shared_task(acks_late=True, ignore_result=True)
def prune_events() -> int:
    """Delete events last seen before the retention period; returns how many."""
    cutoff = timezone.now() - timedelta(days=settings.EVENT_RETENTION_DAYS)
    total = 0
    while True:
        # In batches: one huge DELETE holds SQLite's single write lock for too long.
        batch = list(ClusterEvent.objects.filter(last_seen__lt=cutoff).values_list("pk", flat=True)[:PRUNE_BATCH])
        if not batch:
            break
        deleted, _ = ClusterEvent.objects.filter(pk__in=batch).delete()
        total += deleted
    if total:
        logger.info("pruned %d event(s) older than %d day(s)", total, settings.EVENT_RETENTION_DAYS)
    return total
