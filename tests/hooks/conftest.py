"""Fixtures for the webhook tests: a real Celery worker and clusters on the devcluster."""

from __future__ import annotations

import pytest

from tests.fixtures.celery_worker import celery_queue, celery_worker, start_celery_worker  # noqa: F401
from tests.fixtures.clusters import kube_cluster, watcher  # noqa: F401
from tests.fixtures.devcluster import devcluster, kubeconfig_path  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_rate_limit(settings):
    """Each test gets its own minute budget: the counter lives in Redis, keyed by hook id, and
    hook ids are random per test."""
    settings.WEBHOOK_RATE_PER_MINUTE = 30
