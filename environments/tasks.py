"""Celery tasks that carry an environment to its cluster: its namespace, and its deletion."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import transaction

from clusters.client import ClusterError, client_for
from environments.manifests import render_environment
from environments.models import Environment
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


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def reconcile_environment(self: Task, environment_id: int) -> str:
    """Apply the environment's Namespace and isolation policy."""
    environment = _environment(environment_id)
    if environment is None:
        return "gone"
    what = f"reconcile_environment {environment.pk} ({environment.namespace})"
    logger.info("%s: attempt %d", what, self.request.retries + 1)
    if environment.is_deleting:
        return "deleting"
    try:
        client_for(environment.cluster).apply(render_environment(environment))
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
