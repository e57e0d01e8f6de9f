"""Celery tasks that carry a service's desired state to its cluster.

A task takes an id and re-reads the row: it always applies the service as it is now, so a
task that runs late, twice, or after a newer one leaves the same cluster state. Transient
cluster errors retry with capped exponential backoff and full jitter; a permanent error, or
the last failed retry, sets the service to `failed` with a reason its user can act on. Only
`deploying`/`stopping` (set by the actions) and `failed` come from here: the watcher turns a
service `running` or `stopped` when the cluster says so.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import transaction
from django.utils import timezone

from clusters.client import ClusterError, client_for
from environments.manifests import render_environment
from services import live
from services.manifests import MANAGED_KINDS, render_service
from services.models import Service

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
RETRY_BASE_SECONDS = 1
RETRY_MAX_SECONDS = 60


def retry_delay(retries: int, retry_after: float | None = None) -> int:
    """Seconds before retry number `retries + 1`: full jitter over 1, 2, 4... s capped at a
    minute, and never sooner than the server's Retry-After."""
    delay = get_exponential_backoff_interval(RETRY_BASE_SECONDS, retries, RETRY_MAX_SECONDS, full_jitter=True)
    if retry_after:
        delay = max(delay, min(math.ceil(retry_after), RETRY_MAX_SECONDS))
    return delay


def retry_or_give_up(task: Task, exc: ClusterError, what: str, give_up: Callable[[str], None]) -> None:
    """Retry `task` if `exc` is transient and attempts remain (raises `Retry`), else call
    `give_up` with the sentence to show the user."""
    attempt = task.request.retries + 1
    if exc.retryable and task.request.retries < task.max_retries:
        delay = retry_delay(task.request.retries, exc.retry_after)
        logger.warning("%s: attempt %d failed, retrying in %d s: %s", what, attempt, delay, exc)
        raise task.retry(exc=exc, countdown=delay)
    logger.error(
        "%s: attempt %d failed, giving up (%s): %s",
        what,
        attempt,
        "retries exhausted" if exc.retryable else "permanent",
        exc,
    )
    give_up(exc.user_message)


def _mark_failed(service: Service, reason: str) -> None:
    values = {"status": Service.Status.FAILED, "status_reason": reason, "status_changed_at": timezone.now()}
    # Only if no newer change came meanwhile: a new deploy's "deploying" is not this failure.
    if Service.objects.filter(pk=service.pk, generation=service.generation).update(**values):
        for name, value in values.items():
            setattr(service, name, value)
        live.publish_service(service)


def _remove(kube, service: Service) -> None:
    for api_version, kind in MANAGED_KINDS:
        kube.delete(api_version, kind, service.name, service.namespace)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def reconcile_service(self: Task, service_id: int, generation: int | None = None) -> str:
    """Make the cluster match the service: apply its objects, scale, or delete it.

    `generation` is the one the enqueuing action wrote; it is only logged, because the task
    always applies the current one.
    """
    service = (
        Service.objects.select_related("environment__project__space", "environment__cluster")
        .filter(pk=service_id)
        .first()
    )
    if service is None:
        logger.info("reconcile_service %s: the service is gone", service_id)
        return "gone"
    environment = service.environment
    what = f"reconcile_service {service.pk} ({environment.namespace}/{service.name}) generation {service.generation}"
    logger.info("%s: attempt %d (enqueued for generation %s)", what, self.request.retries + 1, generation)
    if environment.is_deleting:
        # The namespace goes with everything in it; recreating objects would only slow that.
        return "environment deleting"
    deleting = service.status == Service.Status.DELETING
    try:
        kube = client_for(environment.cluster)
        if deleting:
            _remove(kube, service)
        else:
            manifests = render_service(service)
            kube.apply(render_environment(environment) + manifests)
            rendered = {(m["apiVersion"], m["kind"]) for m in manifests}
            # What the spec no longer asks for (the Ingress of a service that became TCP).
            for api_version, kind in MANAGED_KINDS:
                if (api_version, kind) not in rendered:
                    kube.delete(api_version, kind, service.name, service.namespace)
    except ClusterError as exc:
        prefix = "Could not delete the service: " if deleting else ""
        retry_or_give_up(self, exc, what, lambda reason: _mark_failed(service, prefix + reason))
        return "failed"
    if deleting:
        with transaction.atomic():
            if Service.objects.filter(pk=service.pk, status=Service.Status.DELETING).delete()[0]:
                live.publish_service_removed(service.environment.public_id, service.public_id)
        logger.info("%s: deleted", what)
        return "deleted"
    return "applied"
