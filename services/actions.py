"""The user's verbs on services: views, the API and the tests call them, access already checked.

Each verb is one transaction: lock the row (`lifecycle.lock`, so that two requests on one
service serialise instead of both writing the same revision number or generation), check the
space's allocation, make the lifecycle transition (which writes the state and, on commit,
enqueues the reconcile and publishes the card), and record the audit entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from environments.models import Environment
from services import lifecycle, progress
from services.models import SPEC_FIELDS, Revision, Service
from spaces import audit
from spaces.resources import check_services


@transaction.atomic
def deploy_service(
    acting_user: AbstractBaseUser | None,
    environment: Environment,
    cleaned_data: Mapping[str, Any],
    service: Service | None = None,
    cause: str = "deploy",
) -> Service:
    """Create a service (`service=None`) or change its spec, record a revision, run it.

    `cleaned_data` is a valid `ServiceForm`'s: the spec under the model's field names, and
    the name (used only on create: a service's name never changes).
    """
    spec = {field: cleaned_data[field] for field in SPEC_FIELDS if field in cleaned_data}
    if service is None:
        # The form checked the name too; the lock on the environment makes it hold.
        environment = lifecycle.lock_environment(environment)
        service = lifecycle.create(environment, cleaned_data["name"], spec)
    else:
        if service.environment_id != environment.pk:
            raise ValueError("The service is not in this environment.")
        service = lifecycle.lock(service)
        lifecycle.check_disk(service, spec)
        service.apply_snapshot(spec)
    # Before anything is written: a refusal leaves the service as it was (the new one's row
    # goes with the rolled-back transaction).
    check_services([service])
    revision = lifecycle.begin_run(service, acting_user, cause)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_DEPLOY,
        f"Deployed {service.name} (revision {revision.number})", service=service,
        details={"revision": revision.number, "cause": cause},
    )
    return service


@transaction.atomic
def redeploy_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Run the same spec again as a new revision, replacing every pod even if nothing changed."""
    service = lifecycle.lock(service)
    check_services([service])
    service.redeployed_at = timezone.now()
    revision = lifecycle.begin_run(service, acting_user, "redeploy")
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_REDEPLOY,
        f"Redeployed {service.name} (revision {revision.number})", service=service,
        details={"revision": revision.number},
    )
    return service


@transaction.atomic
def rollback_service(acting_user: AbstractBaseUser | None, service: Service, revision: Revision) -> Service:
    """Deploy an earlier revision's spec again, as a new revision caused by `rollback`."""
    if revision.service_id != service.pk:
        raise ValueError("The revision belongs to another service.")
    service = lifecycle.lock(service)
    lifecycle.check_disk(service, revision.spec)
    service.apply_snapshot(revision.spec)
    check_services([service])
    new = lifecycle.begin_run(service, acting_user, "rollback")
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_ROLLBACK,
        f"Rolled {service.name} back to revision {revision.number}", service=service,
        details={"to_revision": revision.number, "revision": new.number},
    )
    return service


@transaction.atomic
def start_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Scale the service back to its replicas."""
    service = lifecycle.lock(service)
    check_services([service])
    lifecycle.begin_start([service])
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_START,
        f"Started {service.name}", service=service,
    )
    return service


@transaction.atomic
def stop_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Scale the service to zero; its spec and revisions stay."""
    service = lifecycle.lock(service)
    lifecycle.begin_stop(service)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_STOP,
        f"Stopped {service.name}", service=service,
    )
    return service


def _in_batch(environment: Environment, desired_state: str) -> list[Service]:
    """The environment's services in `desired_state` (not being deleted), locked, oldest first,
    holding the locked environment (the allocation check and the audit read it)."""
    services = list(
        Service.objects.select_for_update(of=("self",))
        .filter(environment=environment, desired_state=desired_state)
        .exclude(status=Service.Status.DELETING)
        .order_by("pk")
    )
    for service in services:
        service.environment = environment
    return services


def _services(count: int, adjective: str) -> str:
    return f"{count} {adjective} service{'s' if count != 1 else ''}"


@transaction.atomic
def start_all(acting_user: AbstractBaseUser | None, environment: Environment) -> int:
    """Start every stopped service of the environment (after a clone, a Stop All) in one batch
    whatever their number; returns how many."""
    environment = lifecycle.lock_environment(environment)
    stopped = _in_batch(environment, Service.DesiredState.STOPPED)
    # All of them together, before any starts: either every one fits or none starts.
    check_services(stopped)
    lifecycle.begin_start(stopped, batch=True)
    count = len(stopped)
    if count:
        progress.begin(environment, Environment.BulkAction.START, stopped)
        audit.record(
            acting_user, environment.project.space_id, audit.Action.SERVICE_START_ALL,
            f"Started all {_services(count, 'stopped')} of {environment.name}",
            environment=environment, details={"services": [s.name for s in stopped]},
        )
    return count


@transaction.atomic
def stop_all(acting_user: AbstractBaseUser | None, environment: Environment) -> int:
    """Stop every running service of the environment in one batch; their specs, revisions and
    disks stay. Returns how many."""
    environment = lifecycle.lock_environment(environment)
    running = _in_batch(environment, Service.DesiredState.RUNNING)
    lifecycle.begin_batch(running, Service.DesiredState.STOPPED)
    count = len(running)
    if count:
        progress.begin(environment, Environment.BulkAction.STOP, running)
        audit.record(
            acting_user, environment.project.space_id, audit.Action.SERVICE_STOP_ALL,
            f"Stopped all {_services(count, 'running')} of {environment.name}",
            environment=environment, details={"services": [s.name for s in running]},
        )
    return count


@transaction.atomic
def delete_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Mark the service as being deleted; the task removes its objects, then the row."""
    service = lifecycle.lock(service)
    lifecycle.begin_delete(service)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_DELETE,
        f"Deleted {service.name}", service=service,
    )
    return service

