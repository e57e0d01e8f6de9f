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
from clusters.labels import EXTERNAL_SELECTOR, SERVICE_LABEL
from environments.manifests import (
    EXTERNAL_POLICY,
    render_env_secret,
    render_environment,
    render_external_access,
    render_resource_quota,
)
from environments.models import ClusterEvent, Environment, EnvironmentVariable
from services.models import Service
from services.tasks import MAX_RETRIES, reconcile_service, retry_or_give_up
from spaces.models import Project
from spaces.resources import limits_for_space

logger = logging.getLogger(__name__)

# A namespace stays Terminating while the cluster deletes what is in it: minutes, on a busy
# cluster. Polls back off to this interval and give up after about half an hour; the
# environment then stays marked as being deleted for the periodic resync to try again.
DELETE_POLL_MAX_SECONDS = 60
DELETE_MAX_POLLS = 40


def _environment(environment_id: int) -> Environment | None:
    return Environment.objects.select_related("project__space", "cluster").filter(pk=environment_id).first()


def _apply_environment(kube, environment: Environment) -> None:
    """Namespace, isolation, the `ale-env` Secret and the firewall's external access; the
    node ports the cluster gives are recorded on the services for their Copy Address."""
    variables = {v.key: v.value for v in EnvironmentVariable.objects.filter(environment=environment)}
    quota = render_resource_quota(environment, limits_for_space(environment.project.space))
    kube.apply([*render_environment(environment), quota, render_env_secret(environment, variables)])
    tcp = []
    if environment.allow_external_tcp:
        tcp = list(
            Service.objects.filter(environment=environment, kind=Service.Kind.TCP)
            .exclude(status=Service.Status.DELETING)
            .select_related("environment__project__space", "environment__cluster")
        )
    external = render_external_access(environment, tcp)
    applied = kube.apply(external)
    ports: dict[str, int] = {}
    for obj in applied:
        if obj.get("kind") != "Service":
            continue
        spec = obj.get("spec") or {}
        port = (spec.get("ports") or [{}])[0]
        # NodePort: the node's port; LoadBalancer: the balancer listens on the service's port.
        value = port.get("nodePort") if spec.get("type") == "NodePort" else port.get("port")
        public_id = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL)
        if public_id and value:
            ports[public_id] = int(value)
    for service in tcp:
        if service.external_node_port != ports.get(service.public_id):
            Service.objects.filter(pk=service.pk).update(external_node_port=ports.get(service.public_id))
    if not tcp:
        Service.objects.filter(environment=environment, external_node_port__isnull=False).update(external_node_port=None)
    # What an earlier state created and this one does not ask for.
    wanted = {m["metadata"]["name"] for m in external if m["kind"] == "Service"}
    existing, _ = kube.list(
        "v1", "Service", namespace=environment.namespace, label_selector=EXTERNAL_SELECTOR
    )
    for obj in existing:
        name = obj["metadata"]["name"]
        if name not in wanted:
            kube.delete("v1", "Service", name, environment.namespace)
    if not external:
        kube.delete("networking.k8s.io/v1", "NetworkPolicy", EXTERNAL_POLICY, environment.namespace)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def reconcile_environment(self: Task, environment_id: int, service_ids: list[int] | None = None) -> str:
    """Apply the environment's Namespace, isolation policy, variables Secret and firewall.

    `service_ids` (a YAML apply, a clone): services whose reconcile this one starts, so that
    writing hundreds of services enqueues one task on commit instead of hundreds.
    """
    environment = _environment(environment_id)
    if environment is None:
        return "gone"
    what = f"reconcile_environment {environment.pk} ({environment.namespace})"
    logger.info("%s: attempt %d", what, self.request.retries + 1)
    if environment.is_deleting:
        return "deleting"
    if service_ids and self.request.retries == 0:
        # Each service's reconcile applies the namespace too, so they need not wait for this one.
        for service_id in service_ids:
            reconcile_service.delay(service_id)
    try:
        _apply_environment(client_for(environment.cluster), environment)
    except ClusterError as exc:
        # The environment has no status of its own: its services' reconciles apply the same
        # namespace first and show the failure on their cards.
        retry_or_give_up(self, exc, what, lambda reason: None)
        return "failed"
    return "applied"


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
