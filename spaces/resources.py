"""A space's allocation read from the database, and its enforcement before anything reaches a
cluster. The arithmetic itself lives in `spaces.allocation`.

Every action that makes a service run (deploy, redeploy, rollback, start, Start All, a YAML
apply, a clone) calls `check_allocation` inside its own transaction, before it writes. The
check locks the space's row first: two deploys that each fit but together would not then run
one after the other on PostgreSQL, and the second sees the first one's service as running.
(SQLite has one writer at a time, which serialises them as well.) A service's disk is a claim
it holds from creation to deletion, so a stopped service's disk counts too.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db.models import Case, Count, F, IntegerField, Q, Sum, Value, When

from services.models import Service
from spaces.allocation import DEFAULT_LIMITS, Excess, Limits, ServiceSpec, Usage, first_excess
from spaces.models import LIMIT_FIELDS, ResourceAllocation, ResourceProfile, Space


class AllocationExceeded(ValidationError):
    """A change refused because it would exceed the space's allocation; nothing was written.

    A `ValidationError`, so that every view that already shows an action's refusal shows this
    one too.
    """

    def __init__(self, excess: Excess) -> None:
        super().__init__(excess.message, code="allocation")
        self.excess = excess


def limits_for_space(space: Space) -> Limits:
    """The space's limits: its allocation's own values, then its profile's, then `default`'s."""
    allocation = ResourceAllocation.objects.select_related("profile").filter(space=space).first()
    profile = allocation.profile if allocation is not None else None
    if profile is None:
        profile = ResourceProfile.objects.filter(name=ResourceProfile.DEFAULT).first()
    values = {}
    for name in LIMIT_FIELDS:
        value = getattr(allocation, name) if allocation is not None else None
        if value is None and profile is not None:
            value = getattr(profile, name)
        if value is None:
            value = getattr(DEFAULT_LIMITS, name)
        values[name] = value
    return Limits(**values)


def spec_of(service: Service, *, running: bool | None = None) -> ServiceSpec:
    """The service's spec as the arithmetic sees it. Only TCP services get a disk (see
    `services.manifests`), so a web service's `disk_mib` counts nothing."""
    is_running = service.desired_state == Service.DesiredState.RUNNING if running is None else running
    return ServiceSpec(
        capacity=service.capacity,
        cpu_millicores=service.cpu_millicores,
        memory_mib=service.memory_mib,
        disk_mib=service.disk_mib_held,
        replicas=service.replicas,
        running=is_running,
        name=service.name,
    )


def spec_from_fields(name: str, spec: dict, *, running: bool) -> ServiceSpec:
    """A spec not yet on a saved service (a YAML file's, a clone's), from `Service.snapshot()`
    shaped data."""
    kind = spec.get("kind", Service.Kind.WEB)
    return ServiceSpec(
        capacity=spec.get("capacity", Service.Capacity.ON_DEMAND),
        cpu_millicores=int(spec.get("cpu_millicores", 0)),
        memory_mib=int(spec.get("memory_mib", 0)),
        disk_mib=0 if kind == Service.Kind.WEB else int(spec.get("disk_mib", 0) or 0),
        replicas=int(spec.get("replicas", 1)),
        running=running,
        name=name,
    )


def counted_services(space: Space):  # type: ignore[no-untyped-def]
    """The services that count against the space: every one (a stopped one still holds its
    disk) except those being deleted or in an environment going away (its namespace is being
    deleted, so what is in it no longer holds anything for the user)."""
    return Service.objects.filter(
        environment__project__space=space,
        environment__deleting_at__isnull=True,
    ).exclude(status=Service.Status.DELETING)


def usage_for_space(space: Space, *, exclude: Iterable[int] = ()) -> Usage:
    """What the space's services count (CPU and memory of running ones, every one's disk), in
    one aggregate query (a row per capacity)."""
    queryset = counted_services(space)
    excluded = [pk for pk in exclude if pk is not None]
    if excluded:
        queryset = queryset.exclude(pk__in=excluded)
    running = Q(desired_state=Service.DesiredState.RUNNING)
    # One claim per service, whatever its replicas; only TCP services have one.
    disk = Case(When(kind=Service.Kind.WEB, then=Value(0)), default=F("disk_mib"), output_field=IntegerField())
    rows = (
        queryset.order_by()
        .values("capacity")
        .annotate(
            cpu=Sum(F("cpu_millicores") * F("replicas"), filter=running),
            memory=Sum(F("memory_mib") * F("replicas"), filter=running),
            disk=Sum(disk),
            services=Count("pk", filter=running),
            failed=Count("pk", filter=running & Q(status=Service.Status.FAILED)),
            replica_count=Sum("replicas", filter=running),
        )
    )
    usage = Usage()
    for row in rows:
        capacity = row["capacity"]
        usage.amounts[(capacity, "cpu")] = row["cpu"] or 0
        usage.amounts[(capacity, "memory")] = row["memory"] or 0
        usage.amounts[(capacity, "disk")] = row["disk"] or 0
        usage.running_services += row["services"]
        usage.failed_services += row["failed"]
        usage.replicas += row["replica_count"] or 0
    return usage


def lock_space(space_id: int) -> Space:
    """The space's row, locked until the transaction ends: the one lock every check takes."""
    return Space.objects.select_for_update().get(pk=space_id)


def check_allocation(space_id: int, proposed: Iterable[tuple[int | None, ServiceSpec]]) -> None:
    """Raise `AllocationExceeded` when the proposed services, replacing their saved selves,
    would exceed the space's allocation.

    `proposed` holds (service pk or None for a new one, the spec it will have). Call it inside
    the action's transaction, before writing: it locks the space's row so that concurrent
    checks take turns.
    """
    space = lock_space(space_id)
    proposed = list(proposed)
    limits = limits_for_space(space)
    current = usage_for_space(space, exclude=[pk for pk, _ in proposed])
    excess = first_excess(limits, current, [spec for _, spec in proposed])
    if excess is not None:
        raise AllocationExceeded(excess)


def check_services(services: Iterable[Service], *, running: bool = True) -> None:
    """`check_allocation` for services already in memory with the spec they are about to get."""
    services = list(services)
    if not services:
        return
    space_id = services[0].environment.project.space_id
    check_allocation(space_id, [(service.pk, spec_of(service, running=running)) for service in services])
