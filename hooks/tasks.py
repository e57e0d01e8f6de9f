"""Celery tasks of webhooks: acting on a delivery, reporting builds, expiring previews."""

from __future__ import annotations

import logging

from celery import Task, shared_task
from django.db import transaction
from django.utils import timezone

from hooks import actions, status
from hooks.models import CommitStatus, Delivery
from services.models import Build

logger = logging.getLogger(__name__)

MAX_STATUS_ATTEMPTS = 5


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def process_delivery(self: Task, delivery_id: int) -> str:
    """Act on a delivery once: the row is locked and marked processed in one transaction."""
    with transaction.atomic():
        delivery = (
            Delivery.objects.select_for_update(of=("self",))
            .select_related("hook__project__space", "hook__preview_base")
            .filter(pk=delivery_id)
            .first()
        )
        if delivery is None or delivery.processed_at is not None:
            return "done already"
        outcome = actions.process(delivery)
        delivery.processed_at = timezone.now()
        delivery.outcome = outcome[:2000]
        delivery.save(update_fields=["processed_at", "outcome"])
    logger.info("delivery %s (%s %s): %s", delivery.pk, delivery.provider, delivery.event, outcome)
    return outcome


@shared_task
def expire_previews() -> list[str]:
    return actions.expire_previews()


def _state_of(build: Build) -> str:
    if build.status == Build.Status.SUCCEEDED:
        return "success"
    if build.status in Build.ACTIVE:
        return "pending"
    return "failure"


def _target_url(row: CommitStatus) -> str:
    service = row.build.service
    return service.access_url or ""


@shared_task
def report_commit_statuses() -> int:
    """Post the state of every tracked build whose state the host has not been told yet."""
    rows = (
        CommitStatus.objects.exclude(reported_state__in=["success", "failure"])
        .filter(attempts__lt=MAX_STATUS_ATTEMPTS)
        .select_related("hook", "build__service__environment__cluster")
    )
    sent = 0
    for row in rows:
        state = _state_of(row.build)
        if state == row.reported_state:
            continue
        description = {"pending": "Building", "success": "Built and deploying", "failure": "The build failed"}[state]
        api_url = row.hook.host_api_url or status.default_api_url(row.provider, row.repository_url)
        request = status.build_request(
            row.provider, api_url, row.hook.host_token, row.repository_key, row.sha, state, description, _target_url(row)
        )
        try:
            status.send(request)
        except status.StatusError as exc:
            row.attempts = row.attempts + 1 if exc.retryable else MAX_STATUS_ATTEMPTS
            row.last_error = str(exc)
            row.save(update_fields=["attempts", "last_error"])
            continue
        row.reported_state = state
        row.last_error = ""
        row.save(update_fields=["reported_state", "last_error"])
        sent += 1
    return sent
