"""Enqueueing the tasks that carry desired state to a cluster, once the transaction commits.

By registered name, through a Celery signature: the tasks call `services.lifecycle`, which
enqueues them, so naming them here keeps the lifecycle below the tasks instead of in a cycle
with them. A signature of a task this process has imported sends it as `Task.delay` would; one
it has not is sent by name (`send_task`), to the same queue.

A person's click goes first: every task is sent with `PRIORITY` (Redis: 0 is consumed first)
except bulk work, the fan-out of an environment's services (`reconcile_environment` with
services, and the chunks `reconcile_services` it enqueues), sent with `BULK_PRIORITY`. The
worker takes one message per free slot (prefetch 1, acks late) and always the most urgent
waiting one; bulk work comes in chunks short enough that a slot frees every second or two.

`robust`: the desired state is committed either way; if the broker is down the periodic resync
applies it later, and the user's request must not fail after its commit.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from celery import Signature, current_app
from django.db import transaction

RECONCILE_SERVICE = "services.tasks.reconcile_service"
RECONCILE_SERVICES = "services.tasks.reconcile_services"
RUN_BUILD = "services.tasks.run_build"
FINISH_BUILD = "services.tasks.finish_build"
DELETE_BUILD_JOB = "services.tasks.delete_build_job"
RECONCILE_ENVIRONMENT = "environments.tasks.reconcile_environment"
DELETE_ENVIRONMENT = "environments.tasks.delete_environment"

# Celery's Redis transport keeps one list per step of `priority_steps` (settings) and pops
# them in this order.
PRIORITY = 0
BULK_PRIORITY = 9


def priority_for(task_name: str, *args: Any) -> int:
    """How urgent `task_name(*args)` is: the fan-out of many services waits behind the rest."""
    if task_name == RECONCILE_SERVICES:
        return BULK_PRIORITY
    if task_name == RECONCILE_ENVIRONMENT and len(args) > 1 and args[1]:
        return BULK_PRIORITY
    return PRIORITY


def signature(task_name: str, *args: Any) -> Signature:
    return current_app.signature(task_name).set(priority=priority_for(task_name, *args))


def send(task_name: str, *args: Any, countdown: float | None = None, bulk: bool = False) -> None:
    """Send `task_name(*args)` now, with its priority (`bulk`: the lowest, for a part of bulk
    work handed on); `countdown`: not before that many seconds."""
    sig = signature(task_name, *args)
    if bulk:
        sig.set(priority=BULK_PRIORITY)
    sig.apply_async(args, countdown=countdown)


def on_commit(task_name: str, *args: Any) -> None:
    """Send `task_name(*args)` once the current transaction commits."""
    transaction.on_commit(partial(signature(task_name, *args).delay, *args), robust=True)
