"""Fixtures for the API tests: a real Celery worker and a cluster on the devcluster for the
CI-shaped test."""

from __future__ import annotations

from tests.fixtures.celery_worker import celery_queue, celery_worker, start_celery_worker  # noqa: F401
from tests.fixtures.clusters import kube_cluster, watcher  # noqa: F401
from tests.fixtures.devcluster import kubeconfig_path  # noqa: F401
