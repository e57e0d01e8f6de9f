"""Celery tasks of spaces: removing a deleted space's row once everything in it is gone."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from environments.actions import delete_environment
from environments.models import Environment
from spaces.models import Space

logger = logging.getLogger(__name__)

POLL_MAX_SECONDS = 60
# Each environment's deletion polls for about half an hour; this waits a little longer.
MAX_POLLS = 50


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_POLLS)
def delete_space(self: Task, space_id: int) -> str:
    """Delete the space's row once its projects are gone (their environment deletions remove
    them with their namespaces). A space that still has members was not deleted by anyone:
    it is left alone, whatever a stray task says."""
    space = Space.objects.filter(pk=space_id).first()
    if space is None:
        return "gone"
    if space.is_default or space.memberships.exists():
        logger.warning("delete_space %s: the space is not being deleted; nothing done", space_id)
        return "not deleting"
    # Environments created after the deletion began (a request that was already under way).
    for environment in Environment.objects.filter(project__space=space, deleting_at__isnull=True).select_related("project"):
        delete_environment(acting_user=None, environment=environment)
    if space.projects.exists():
        if self.request.retries >= self.max_retries:
            logger.error("delete_space %s: projects remain after %d polls", space_id, self.request.retries + 1)
            return "still deleting"
        raise self.retry(countdown=min(2**self.request.retries, POLL_MAX_SECONDS))
    space.delete()
    logger.info("delete_space %s: deleted", space_id)
    return "deleted"
