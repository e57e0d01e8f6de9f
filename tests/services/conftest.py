"""Fixtures for the services tests: clusters on the devcluster, a real Celery worker."""

from __future__ import annotations

import pytest

from tests.services.stream_helpers import close_sockets

from tests.fixtures.celery_worker import celery_queue, celery_worker, start_celery_worker  # noqa: F401
from tests.fixtures.clusters import fault_cluster, kube_cluster, watcher  # noqa: F401
from tests.fixtures.devcluster import devcluster, kubeconfig_path  # noqa: F401


@pytest.fixture
async def streams_cleaned_up():
    """For tests that open sockets or call the database from async code: at their end, each
    socket is disconnected as a browser would, and asgiref's thread lets go of the database."""
    yield
    await close_sockets()
