"""Enqueueing the tasks that carry desired state to a cluster, once the transaction commits.

By registered name, through a Celery signature: the tasks call `services.lifecycle`, which
enqueues them, so naming them here keeps the lifecycle below the tasks instead of in a cycle
with them. A signature of a task this process has imported sends it as `Task.delay` would; one
it has not is sent by name (`send_task`), to the same queue.

`robust`: the desired state is committed either way; if the broker is down the periodic resync
applies it later, and the user's request must not fail after its commit.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import current_app
from django.db import transaction

RECONCILE_SERVICE = "services.tasks.reconcile_service"
RUN_BUILD = "services.tasks.run_build"
FINISH_BUILD = "services.tasks.finish_build"
DELETE_BUILD_JOB = "services.tasks.delete_build_job"
RECONCILE_ENVIRONMENT = "environments.tasks.reconcile_environment"
DELETE_ENVIRONMENT = "environments.tasks.delete_environment"


def on_commit(task_name: str, *args: Any) -> None:
    """Send `task_name(*args)` once the current transaction commits."""
    transaction.on_commit(partial(current_app.signature(task_name).delay, *args), robust=True)
