"""The life of a service: the only code that writes a Service's status, generation and desired
state, and the only code that creates its `Revision` and `Build` rows.

Each transition runs in the caller's transaction, on a row the caller locked (`lock`), and
registers what follows on commit: the reconcile that carries the row to its cluster (or the
build that comes first) and the live card. Many services at once (Start All, Stop All, a YAML
apply, a clone) are written with bulk queries and handed to one environment task, which
publishes their cards. Callers:

* `services.actions` — the user's verbs, after the access check and the allocation;
* `environments.yaml_document` and `environments.actions` — a YAML apply, a clone, deleting an
  environment: the same transitions, in bulk where there are many services;
* `services.tasks` — what the cluster said: a build's end, a permanent failure;
* `services.observed` — what the watcher and the resync see.

Whichever way a change arrives, the same rules hold: a Git service builds when its repository
or branch changes and a newer build cancels the one in flight; a service does not start while
a secret it reads is missing; a failure lands only on the generation it is about.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db.models import F, Max
from django.utils import timezone

from environments.models import Environment
from services import builds, guards, live, progress, queue
from services.models import SPEC_FIELDS, Build, Revision, Service, disk_rule_errors
from services.status import ObservedStatus

logger = logging.getLogger(__name__)

# The spec fields a build reads: changing one of a Git service rebuilds it.
BUILD_FIELDS = ("source", "repository_url", "branch", "repository_path", "dockerfile", "build_args")

_STATUS_FIELDS = ["status", "status_reason", "status_changed_at", "updated_at"]


# --- locking and the rules that need the locked row ----------------------------------------------


def lock(service: Service) -> Service:
    """The service re-read under a row lock, with what rendering and the card need; refused
    while it or its environment is being deleted."""
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


def lock_environment(environment: Environment) -> Environment:
    """The environment re-read under a row lock, refused while it is being deleted: what a new
    service, a YAML apply and Start All take first."""
    locked = (
        Environment.objects.select_for_update(of=("self",))
        .select_related("project__space", "cluster")
        .get(pk=environment.pk)
    )
    if locked.is_deleting:
        raise ValidationError("This environment is being deleted.")
    return locked


def check_disk(service: Service | None, spec: Mapping[str, Any]) -> None:
    """The disk's rules against the locked row (None for a new service): the form checked an
    older read of it, and a rollback brings a spec no form saw. Shrinking or dropping a claim
    would lose its data."""
    current = service.disk_mib_held if service is not None else 0
    whole = {**service.snapshot(), **spec} if service is not None else dict(spec)
    refusals = disk_rule_errors(current, whole)
    if refusals:
        raise ValidationError(list(refusals.values()))


# --- small helpers ------------------------------------------------------------------------------


def _set_status(service: Service, status: str, reason: str = "") -> None:
    service.status = status
    service.status_reason = reason
    service.status_changed_at = timezone.now()


def _enqueue_reconcile(service: Service) -> None:
    queue.on_commit(queue.RECONCILE_SERVICE, service.pk, service.generation)
    if service.environment.allow_external_tcp and not service.is_web:
        # The firewall is open: the environment's reconcile gives a TCP service its external
        # Service and records the port for Copy Address (and drops those of deleted ones).
        queue.on_commit(queue.RECONCILE_ENVIRONMENT, service.environment_id)


def _save(service: Service) -> None:
    """Save the locked service and, on commit, carry it to the cluster and the browsers. A
    service `building` is carried by its build instead: its Deployment changes when the image
    is ready (`finish_build`)."""
    service.save()
    # `generation` was bumped in Python from the locked row: no lost update is possible.
    logger.info(
        "service %s (%s) generation %s: %s, %s",
        service.pk, service.name, service.generation, service.desired_state, service.status,
    )  # fmt: skip
    if service.status != Service.Status.BUILDING:
        _enqueue_reconcile(service)
    live.publish_service(service)


def _record_revision(service: Service, acting_user: AbstractBaseUser | None, cause: str) -> Revision:
    number = (service.revisions.aggregate(last=Max("number"))["last"] or 0) + 1
    return Revision.objects.create(
        service=service, number=number, spec=service.snapshot(), created_by=acting_user, cause=cause
    )


# --- builds -------------------------------------------------------------------------------------


def cancel_builds(service: Service, reason: str) -> list[Build]:
    """Cancel the service's queued and running builds; their Jobs are deleted on commit."""
    active = list(service.builds.filter(status__in=Build.ACTIVE))
    if not active:
        return []
    Build.objects.filter(pk__in=[build.pk for build in active]).update(
        status=Build.Status.CANCELLED, reason=reason, finished_at=timezone.now()
    )
    for build in active:
        queue.on_commit(queue.DELETE_BUILD_JOB, build.pk)
    return active


def start_build(service: Service, acting_user: AbstractBaseUser | None) -> Build:
    """Record a build of the service's repository and branch (cancelling the one in flight),
    set the service `building` (unsaved: the caller saves it) and enqueue the Job on commit."""
    cancel_builds(service, "Superseded by a newer deploy.")
    number = (service.builds.aggregate(last=Max("number"))["last"] or 0) + 1
    build = Build(
        service=service, number=number, repository_url=service.repository_url, branch=service.branch,
        created_by=acting_user,
    )  # fmt: skip
    build.job_name = builds.job_name_for(service, build.public_id)
    build.image = builds.image_for(service, number, build.public_id)
    build.save()
    _set_status(service, Service.Status.BUILDING, f"Building branch {service.branch}.")
    queue.on_commit(queue.RUN_BUILD, build.pk)
    return build


def build_first(service: Service) -> str:
    """A Git service asked to run with no image yet (from a YAML file, a clone started, a stale
    task) builds first, unless a build is on its way or it was stopped meanwhile. `service` is
    locked by the caller."""
    if service.status == Service.Status.BUILDING or service.image:
        return "building"
    if service.desired_state != Service.DesiredState.RUNNING:
        return "stopped"
    start_build(service, None)
    service.save(update_fields=_STATUS_FIELDS)
    live.publish_service(service)
    return "building"


def mark_build_running(build: Build) -> bool:
    """The build's Job is applied: queued → building. False when it was cancelled meanwhile."""
    Build.objects.filter(pk=build.pk, status=Build.Status.QUEUED).update(
        status=Build.Status.BUILDING, started_at=timezone.now()
    )
    return Build.objects.filter(pk=build.pk, status=Build.Status.BUILDING).exists()


def fail_build(build: Build, reason: str) -> None:
    """The build failed before or outside its Job (the cluster refused it): say so on the build
    and, if it is still the one the service waits for, on the service."""
    if not Build.objects.filter(pk=build.pk, status__in=Build.ACTIVE).update(
        status=Build.Status.FAILED, reason=reason, finished_at=timezone.now()
    ):
        return
    values = {"status": Service.Status.FAILED, "status_reason": f"Build failed: {reason}", "status_changed_at": timezone.now()}
    service = build.service
    if Service.objects.filter(pk=service.pk, status=Service.Status.BUILDING).update(**values):
        for name, value in values.items():
            setattr(service, name, value)
        live.publish_service(service)
        progress.publish_for([service])


def finish_build(build: Build, *, succeeded: bool, reason: str, commit: str) -> str:
    """Record a build's end and move the service on: a success points it at the new image and
    reconciles it; a failure shows the reason while the previous image (if any) keeps running.
    Returns the build's status, or why nothing was recorded."""
    try:
        service = lock(build.service)
    except ValidationError:
        return "deleting"
    locked = Build.objects.select_for_update().filter(pk=build.pk, status__in=Build.ACTIVE).first()
    if locked is None:
        return "cancelled"
    locked.status = Build.Status.SUCCEEDED if succeeded else Build.Status.FAILED
    locked.reason = "" if succeeded else reason
    locked.commit = commit
    locked.finished_at = timezone.now()
    locked.started_at = locked.started_at or locked.created_at
    locked.save(update_fields=["status", "reason", "commit", "finished_at", "started_at"])
    if succeeded:
        service.image = locked.image
        service.generation += 1
        running = service.desired_state == Service.DesiredState.RUNNING
        _set_status(service, Service.Status.DEPLOYING if running else Service.Status.STOPPING)
        _save(service)
    elif service.status == Service.Status.BUILDING:
        # Nothing to reconcile: the Deployment keeps running the previous image, if any.
        _set_status(service, Service.Status.FAILED, f"Build failed:\n{reason}")
        service.save(update_fields=_STATUS_FIELDS)
        live.publish_service(service)
        progress.publish_for([service])
    return locked.status


# --- one service --------------------------------------------------------------------------------


def create(environment: Environment, name: str, spec: Mapping[str, Any]) -> Service:
    """A new service's row (generation 0) in the locked environment, for `begin_run` to run."""
    if Service.objects.filter(environment=environment, name=name).exists():
        raise ValidationError("This environment already has a service with this name.")
    check_disk(None, spec)
    service = Service(environment=environment, name=name, generation=0)
    service.apply_snapshot(dict(spec))
    # Saved once first: the revision needs the row, `begin_run` bumps the generation to 1.
    service.save()
    return service


def begin_run(service: Service, acting_user: AbstractBaseUser | None, cause: str) -> Revision:
    """Record a revision of the service's current spec and run it (deploy, redeploy, rollback).
    A Git service builds its branch head again, cancelling the build in flight."""
    service.generation += 1
    service.desired_state = Service.DesiredState.RUNNING
    service.deployed_by = acting_user
    service.deployed_at = timezone.now()
    _set_status(service, Service.Status.DEPLOYING)
    if service.is_git:
        start_build(service, acting_user)
    else:
        cancel_builds(service, "Superseded by a deploy of a container image.")
    revision = _record_revision(service, acting_user, cause)
    _save(service)
    return revision


def begin_start(services: Sequence[Service], *, batch: bool = False) -> None:
    """Start stopped services (a card's Start, Start All): all of them, or none when one reads
    a secret its environment lacks. A Git service never built (a clone, a failed first build)
    builds first. Several services, or a `batch` of one (Start All), go together
    (`begin_batch`); one alone publishes its card and goes ahead of batches."""
    guards.check_secrets(services)
    if batch or len(services) != 1:
        begin_batch(services, Service.DesiredState.RUNNING)
        return
    service = services[0]
    service.desired_state = Service.DesiredState.RUNNING
    service.generation += 1
    _set_status(service, Service.Status.DEPLOYING)
    if service.is_git and not service.image and not service.builds.filter(status__in=Build.ACTIVE).exists():
        start_build(service, None)
    _save(service)


def begin_batch(services: Sequence[Service], state: str) -> None:
    """Start or stop many locked services of one environment (Start All, Stop All) in a few
    queries whatever their number, and hand them to the cluster through one environment task
    on commit, which publishes their cards: rendering hundreds of cards has no place in the
    request. A Git service started with no image and no build on its way builds first."""
    if not services:
        return
    now = timezone.now()
    running = state == Service.DesiredState.RUNNING
    values = {
        "desired_state": state,
        "status": Service.Status.DEPLOYING if running else Service.Status.STOPPING,
        "status_reason": "",
        "status_changed_at": now,
        "updated_at": now,
    }
    # One UPDATE for the whole batch: the same values for all, and each generation bumped from
    # its locked row (a `bulk_update` of hundreds of rows costs more in Python than in SQL).
    Service.objects.filter(pk__in=[s.pk for s in services]).update(generation=F("generation") + 1, **values)
    for service in services:
        service.generation += 1
        for name, value in values.items():
            setattr(service, name, value)
    if running:
        building = _start_builds([s for s in services if s.is_git and not s.image])
        if building:
            Service.objects.bulk_update(building, _STATUS_FIELDS)
    environment_id = services[0].environment_id
    logger.info(
        "environment %s: %d service(s) to %s", environment_id, len(services), state
    )  # fmt: skip
    queue.on_commit(queue.RECONCILE_ENVIRONMENT, environment_id, [s.pk for s in services])


def _start_builds(services: Sequence[Service]) -> list[Service]:
    """`start_build` for the services with no build on its way, in three queries for all;
    returns the services it set `building` (unsaved: the caller saves them)."""
    if not services:
        return []
    busy = set(
        Build.objects.filter(service__in=services, status__in=Build.ACTIVE).values_list("service_id", flat=True)
    )
    services = [s for s in services if s.pk not in busy]
    if not services:
        return []
    last = dict(
        Build.objects.filter(service__in=services).values("service").annotate(last=Max("number")).values_list("service", "last")
    )
    new = []
    for service in services:
        number = last.get(service.pk, 0) + 1
        build = Build(service=service, number=number, repository_url=service.repository_url, branch=service.branch)
        build.job_name = builds.job_name_for(service, build.public_id)
        build.image = builds.image_for(service, number, build.public_id)
        new.append(build)
        _set_status(service, Service.Status.BUILDING, f"Building branch {service.branch}.")
    for build in Build.objects.bulk_create(new):
        queue.on_commit(queue.RUN_BUILD, build.pk)
    return services


def begin_stop(service: Service) -> None:
    """Scale the service to zero; its spec, revisions and disk stay."""
    service.desired_state = Service.DesiredState.STOPPED
    service.generation += 1
    _set_status(service, Service.Status.STOPPING)
    _save(service)


def begin_delete(service: Service) -> None:
    """Mark the service as being deleted; its reconcile removes its objects, then the row."""
    service.desired_state = Service.DesiredState.STOPPED
    service.generation += 1
    cancel_builds(service, "The service was deleted.")
    _set_status(service, Service.Status.DELETING)
    _save(service)


def begin_delete_environment(environment: Environment) -> int:
    """Every service of an environment being deleted: its builds cancelled and its card shown
    as deleting. No reconcile per service: deleting the namespace removes their objects, and
    the rows go with the environment's. Returns how many services it marked."""
    services = list(
        Service.objects.select_for_update(of=("self",))
        .filter(environment=environment)
        .exclude(status=Service.Status.DELETING)
        .order_by("pk")
    )
    if not services:
        return 0
    Build.objects.filter(service__in=services, status__in=Build.ACTIVE).update(
        status=Build.Status.CANCELLED, reason="The environment was deleted.", finished_at=timezone.now()
    )
    now = timezone.now()
    for service in services:
        service.environment = environment
        service.desired_state = Service.DesiredState.STOPPED
        service.generation += 1
        service.status, service.status_reason, service.status_changed_at = Service.Status.DELETING, "", now
        service.updated_at = now
    Service.objects.bulk_update(
        services, ["desired_state", "generation", "status", "status_reason", "status_changed_at", "updated_at"]
    )
    live.publish_services(services)
    return len(services)


def mark_failed(service: Service, generation: int, reason: str) -> bool:
    """A permanent failure of the reconcile of `generation`: shown only if no newer change came
    meanwhile (a new deploy's "deploying" is not this failure). Returns whether it was."""
    values = {"status": Service.Status.FAILED, "status_reason": reason, "status_changed_at": timezone.now()}
    if not Service.objects.filter(pk=service.pk, generation=generation).update(**values):
        return False
    for name, value in values.items():
        setattr(service, name, value)
    live.publish_service(service)
    progress.publish_for([service])
    return True


def finish_delete(service: Service) -> bool:
    """The cluster no longer has the service's objects: its row goes, and its card with it."""
    if not Service.objects.filter(pk=service.pk, status=Service.Status.DELETING).delete()[0]:
        return False
    live.publish_service_removed(service.environment.public_id, service.public_id)
    return True


def observe(service: Service, observed: ObservedStatus, now: Any) -> bool:
    """What the cluster shows, written only when it changes the card and only over the row the
    derivation read (compare-and-set): a user or a task that changed the service meanwhile
    wins, and the caller derives it again. Returns whether it was written; the caller
    publishes the written cards together."""
    if observed == (service.status, service.status_reason, service.ready_replicas):
        return False
    values: dict[str, Any] = {
        "status": observed.status,
        "status_reason": observed.reason,
        "ready_replicas": observed.ready_replicas,
    }
    if observed.status != service.status:
        values["status_changed_at"] = now
    updated = Service.objects.filter(
        pk=service.pk,
        status=service.status,
        status_reason=service.status_reason,
        ready_replicas=service.ready_replicas,
        desired_state=service.desired_state,
        replicas=service.replicas,
        generation=service.generation,
    ).update(**values)
    if not updated:
        return False
    for name, value in values.items():
        setattr(service, name, value)
    return True


# The columns `observe` compares before it writes: what the derivation read.
COMPARED = ("status", "status_reason", "ready_replicas", "desired_state", "replicas", "generation")


def observe_many(pending: list[tuple[Service, ObservedStatus]], now: datetime) -> tuple[list[Service], list[Service]]:
    """`observe` for many services in a few queries: the same compare-and-set, in bulk.

    The rows are read again under a row lock (in the caller's transaction) and only those still
    as the derivation read them are written, one UPDATE per distinct new value (a storm sets
    hundreds of cards to the same "Running"); the others moved under us (a user or a task wrote
    them) and are returned to be derived again. Returns (written, moved).
    """
    by_pk = {service.pk: (service, observed) for service, observed in pending}
    current = {
        row[0]: row[1:]
        for row in Service.objects.select_for_update()
        .filter(pk__in=by_pk)
        .order_by("pk")
        .values_list("pk", *COMPARED)
    }
    written: list[Service] = []
    moved: list[Service] = []
    updates: dict[tuple[str, str, int, bool], list[int]] = {}
    for pk, (service, observed) in by_pk.items():
        if current.get(pk) != tuple(getattr(service, name) for name in COMPARED):
            moved.append(service)
            continue
        status_changed = observed.status != service.status
        updates.setdefault((*observed, status_changed), []).append(pk)
        if status_changed:
            service.status_changed_at = now
        service.status, service.status_reason, service.ready_replicas = observed
        written.append(service)
    for (status, reason, ready, status_changed), pks in updates.items():
        values: dict[str, Any] = {"status": status, "status_reason": reason, "ready_replicas": ready}
        if status_changed:
            values["status_changed_at"] = now
        Service.objects.filter(pk__in=pks).update(**values)
    return written, moved


# --- many services at once: a YAML apply, a clone -----------------------------------------------


@dataclass
class SpecWrite:
    """One service of a bulk write: created (`service` None) or changed to `spec` and `state`."""

    name: str
    spec: dict[str, Any]
    state: str
    service: Service | None = None
    # False when only the desired state changes: no new revision, no deploy by the user.
    spec_changed: bool = True


def _needs_build(service: Service, before: dict[str, Any]) -> bool:
    return service.is_git and any(before.get(name) != getattr(service, name) for name in BUILD_FIELDS)


def write_many(
    acting_user: AbstractBaseUser | None, environment: Environment, writes: Sequence[SpecWrite], *, cause: str
) -> list[Service]:
    """Create and change services in bulk, with their revisions, in a few queries whatever their
    number; the caller holds the environment's lock (and the services', for changes) and the
    allocation check. A changed Git service whose repository or branch (or another build input)
    changed builds again, cancelling the build in flight, as a deploy does; stopped, it keeps
    no image of the old branch, so that its next start builds the new one. Services it would
    start from stopped must have their secrets. The written services are handed, with their
    cards to publish, to one environment task on commit; returns them."""
    now = timezone.now()
    starting = [
        w.service for w in writes
        if w.service is not None and w.service.desired_state == Service.DesiredState.STOPPED
        and w.state == Service.DesiredState.RUNNING
    ]  # fmt: skip
    if starting:
        guards.check_specs_secrets(
            environment.pk, environment.public_id, {w.name: w.spec for w in writes if w.service in starting}
        )

    new_services: list[Service] = []
    for write in writes:
        if write.service is not None:
            continue
        running = write.state == Service.DesiredState.RUNNING
        service = Service(
            environment=environment,
            name=write.name,
            generation=1,
            desired_state=write.state,
            # A new stopped service has nothing in the cluster to stop.
            status=Service.Status.DEPLOYING if running else Service.Status.STOPPED,
            status_changed_at=now,
            deployed_by=acting_user if running else None,
            deployed_at=now if running else None,
        )
        service.apply_snapshot(write.spec)
        new_services.append(service)
    Service.objects.bulk_create(new_services)

    changed: list[Service] = []
    revised: list[Service] = []
    for write in writes:
        if write.service is None:
            continue
        service = write.service
        before = service.snapshot()
        had_git = service.is_git
        service.apply_snapshot(write.spec)
        service.generation += 1
        service.desired_state = write.state
        running = write.state == Service.DesiredState.RUNNING
        _set_status(service, Service.Status.DEPLOYING if running else Service.Status.STOPPING)
        service.status_changed_at = now
        service.updated_at = now
        if write.spec_changed:
            service.deployed_by = acting_user
            service.deployed_at = now
            revised.append(service)
        if _needs_build(service, before):
            if running:
                start_build(service, acting_user)
            else:
                cancel_builds(service, "Superseded by a change of the repository or branch.")
                service.image = ""
        elif had_git and not service.is_git:
            cancel_builds(service, "Superseded by a deploy of a container image.")
        changed.append(service)
    if changed:
        Service.objects.bulk_update(
            changed,
            [*SPEC_FIELDS, "generation", "desired_state", "status", "status_reason", "status_changed_at",
             "deployed_by", "deployed_at", "updated_at"],
        )  # fmt: skip
    last = {}
    if revised:
        last = dict(
            Revision.objects.filter(service__in=revised).values("service").annotate(last=Max("number")).values_list("service", "last")
        )
    Revision.objects.bulk_create(
        [Revision(service=s, number=1, spec=s.snapshot(), created_by=acting_user, cause=cause) for s in new_services]
        + [
            Revision(service=s, number=last.get(s.pk, 0) + 1, spec=s.snapshot(), created_by=acting_user, cause=cause)
            for s in revised
        ]
    )
    written = new_services + changed
    for service in written:
        # Loaded already: a caller reading it costs no query per service.
        service.environment = environment
    if written:
        # One task on commit: the cards, the environment's objects, then its services.
        queue.on_commit(queue.RECONCILE_ENVIRONMENT, environment.pk, [s.pk for s in written])
    return written
