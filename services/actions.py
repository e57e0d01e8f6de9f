"""Workflows on services. Views, the YAML importer and the tests all go through these verbs.

Each verb is one transaction that writes the desired state and, once it is committed, enqueues
`reconcile_service` for the service: the task reads whatever is current when it runs, so the
order in which tasks arrive does not matter. The row is locked (`select_for_update`) first, so
that two requests on one service (a stop during a deploy, two deploys) serialise on
PostgreSQL instead of both writing the same revision number or generation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import partial
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from environments.models import Environment
from services import builds, guards, live
from services.models import SPEC_FIELDS, Revision, Service, disk_rule_errors
from spaces import audit
from spaces.resources import check_services

logger = logging.getLogger(__name__)


def _enqueue_reconcile(service: Service) -> None:
    from services.tasks import reconcile_service

    # robust: the desired state is committed either way; if the broker is down the periodic
    # resync applies it later, and the user's request must not fail after its commit.
    transaction.on_commit(partial(reconcile_service.delay, service.pk, service.generation), robust=True)
    if service.environment.allow_external_tcp and not service.is_web:
        from environments.tasks import reconcile_environment

        # The firewall is open: the environment's reconcile gives a TCP service its external
        # Service and records the port for Copy Address (and drops those of deleted ones).
        transaction.on_commit(partial(reconcile_environment.delay, service.environment_id), robust=True)


def _lock(service: Service) -> Service:
    """The service re-read under a row lock, with what rendering and the card need."""
    locked = (
        Service.objects.select_for_update(of=("self",))
        .select_related("environment__project__space", "environment__cluster")
        .get(pk=service.pk)
    )
    if locked.status == Service.Status.DELETING:
        raise ValidationError("This service is being deleted.")
    if locked.environment.is_deleting:
        raise ValidationError("This environment is being deleted.")
    return locked


def _set_status(service: Service, status: str, reason: str = "") -> None:
    service.status = status
    service.status_reason = reason
    service.status_changed_at = timezone.now()


def _check_disk(service: Service | None, spec: Mapping[str, Any]) -> None:
    """The disk's rules against the locked row (None for a new service): the form checked an
    older read of it, and a rollback brings a spec no form saw. Shrinking or dropping a claim
    would lose its data."""
    current = service.disk_mib_held if service is not None else 0
    whole = {**service.snapshot(), **spec} if service is not None else dict(spec)
    refusals = disk_rule_errors(current, whole)
    if refusals:
        raise ValidationError(list(refusals.values()))


def _record_revision(service: Service, acting_user: AbstractBaseUser | None, cause: str) -> Revision:
    number = (service.revisions.aggregate(last=Max("number"))["last"] or 0) + 1
    return Revision.objects.create(
        service=service, number=number, spec=service.snapshot(), created_by=acting_user, cause=cause
    )


def _save(service: Service) -> None:
    """Save the locked service and, on commit, carry it to the cluster and the browsers. A
    service `building` is carried by its build instead: its Deployment changes when the image
    is ready (`services.tasks.finish_build`)."""
    service.save()
    # `generation` was bumped in Python from the locked row: no lost update is possible.
    logger.info(
        "service %s (%s) generation %s: %s, %s",
        service.pk,
        service.name,
        service.generation,
        service.desired_state,
        service.status,
    )
    if service.status != Service.Status.BUILDING:
        _enqueue_reconcile(service)
    live.publish_service(service)


def _run(service: Service, acting_user: AbstractBaseUser | None, cause: str) -> Revision:
    """Record a revision of the current spec and ask for it to run."""
    service.generation += 1
    service.desired_state = Service.DesiredState.RUNNING
    service.deployed_by = acting_user
    service.deployed_at = timezone.now()
    _set_status(service, Service.Status.DEPLOYING)
    if service.is_git:
        # Every deploy of a Git service builds the branch head again.
        builds.start_build(service, acting_user)
    else:
        builds.cancel_active_builds(service, "Superseded by a deploy of a container image.")
    revision = _record_revision(service, acting_user, cause)
    _save(service)
    return revision


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
        environment = Environment.objects.select_for_update().get(pk=environment.pk)
        if environment.is_deleting:
            raise ValidationError("This environment is being deleted.")
        # The form checked this too; the lock on the environment makes it hold.
        if Service.objects.filter(environment=environment, name=cleaned_data["name"]).exists():
            raise ValidationError("This environment already has a service with this name.")
        _check_disk(None, spec)
        service = Service(environment=environment, name=cleaned_data["name"], generation=0)
        service.apply_snapshot(spec)
        # Saved once first: the revision needs the row, `_run` bumps the generation to 1.
        service.save()
    else:
        if service.environment_id != environment.pk:
            raise ValueError("The service is not in this environment.")
        service = _lock(service)
        _check_disk(service, spec)
        service.apply_snapshot(spec)
    # Before anything is written: a refusal leaves the service as it was (the new one's row
    # goes with the rolled-back transaction).
    check_services([service])
    revision = _run(service, acting_user, cause)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_DEPLOY,
        f"Deployed {service.name} (revision {revision.number})", service=service,
        details={"revision": revision.number, "cause": cause},
    )
    return service


@transaction.atomic
def redeploy_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Run the same spec again as a new revision, replacing every pod even if nothing changed."""
    service = _lock(service)
    check_services([service])
    service.redeployed_at = timezone.now()
    revision = _run(service, acting_user, "redeploy")
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
    service = _lock(service)
    _check_disk(service, revision.spec)
    service.apply_snapshot(revision.spec)
    check_services([service])
    new = _run(service, acting_user, "rollback")
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_ROLLBACK,
        f"Rolled {service.name} back to revision {revision.number}", service=service,
        details={"to_revision": revision.number, "revision": new.number},
    )
    return service


def _start_locked(service: Service) -> None:
    service.desired_state = Service.DesiredState.RUNNING
    service.generation += 1
    _set_status(service, Service.Status.DEPLOYING)
    if service.is_git and not service.image and not service.builds.filter(status__in=builds.Build.ACTIVE).exists():
        # A Git service never built (a clone, a failed first build) has nothing to start.
        builds.start_build(service, None)
    _save(service)


@transaction.atomic
def start_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Scale the service back to its replicas."""
    service = _lock(service)
    check_services([service])
    guards.check_secrets([service])
    _start_locked(service)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_START,
        f"Started {service.name}", service=service,
    )
    return service


@transaction.atomic
def stop_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Scale the service to zero; its spec and revisions stay."""
    service = _lock(service)
    service.desired_state = Service.DesiredState.STOPPED
    service.generation += 1
    _set_status(service, Service.Status.STOPPING)
    _save(service)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_STOP,
        f"Stopped {service.name}", service=service,
    )
    return service


@transaction.atomic
def start_all(acting_user: AbstractBaseUser | None, environment: Environment) -> int:
    """Start every stopped service of the environment (after a clone); returns how many."""
    environment = Environment.objects.select_for_update().get(pk=environment.pk)
    if environment.is_deleting:
        raise ValidationError("This environment is being deleted.")
    stopped = (
        Service.objects.select_for_update(of=("self",))
        .select_related("environment__project__space", "environment__cluster")
        .filter(environment=environment, desired_state=Service.DesiredState.STOPPED)
        .exclude(status=Service.Status.DELETING)
        .order_by("pk")
    )
    stopped = list(stopped)
    # All of them together, before any starts: either every one fits or none starts.
    check_services(stopped)
    if stopped:
        guards.check_secrets(stopped)
    count = 0
    for service in stopped:
        _start_locked(service)
        count += 1
    if count:
        audit.record(
            acting_user, environment.project.space_id, audit.Action.SERVICE_START_ALL,
            f"Started all {count} stopped service{'s' if count != 1 else ''} of {environment.name}",
            environment=environment, details={"services": [s.name for s in stopped]},
        )
    return count


@transaction.atomic
def delete_service(acting_user: AbstractBaseUser | None, service: Service) -> Service:
    """Mark the service as being deleted; the task removes its objects, then the row."""
    service = _lock(service)
    service.desired_state = Service.DesiredState.STOPPED
    service.generation += 1
    builds.cancel_active_builds(service, "The service was deleted.")
    _set_status(service, Service.Status.DELETING)
    _save(service)
    audit.record(
        acting_user, service.environment.project.space_id, audit.Action.SERVICE_DELETE,
        f"Deleted {service.name}", service=service,
    )
    return service

