"""The Celery app: every cluster operation runs as a task of this app."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery
from celery.signals import task_prerun, worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ale_site.settings")

app = Celery("ale")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def keep_database_connections(**kwargs: Any) -> None:
    """A worker's connections outlive a task (`ale_site.connections`); set before the pool
    forks, so that every process of it has them."""
    from ale_site.connections import keep_connections

    keep_connections()


@task_prerun.connect
def drop_unusable_connections(task: Any = None, **kwargs: Any) -> None:
    """Before each task a worker runs, as Django does before each request: a connection that
    failed, or is older than its maximum age, is closed (the next query opens another); the one
    kept is checked at its first query (a database restarted since is noticed there). A task
    run in the caller's process (`apply()`) uses the caller's connection as it is."""
    if task is not None and getattr(task.request, "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
