"""A space's allocation as arithmetic: pure functions on numbers, no database.

What counts is what ale's documentation says: the limits of running services, not what their
pods use at the moment. A running service with `replicas` replicas counts `replicas` times its
CPU and memory; a stopped one counts none. A disk is a PersistentVolumeClaim that the service
holds from its creation to its deletion, running or stopped, so it counts once, always.
Per-service maximums are about one replica (the size the deploy modal asks for), replicas have
a limit of their own.

`first_excess` answers "would this change exceed the allocation, and how": the first limit
exceeded, as the sentence the user reads ("Spot memory: this needs 2 GiB, 0.5 GiB of 8 GiB is
left").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from decimal import Decimal

ON_DEMAND = "on_demand"
SPOT = "spot"
CAPACITIES = (ON_DEMAND, SPOT)
CAPACITY_LABELS = {ON_DEMAND: "On-demand", SPOT: "Spot"}


@dataclass(frozen=True)
class Limits:
    """Every limit of a space. CPU in millicores, memory and disk in MiB."""

    on_demand_cpu_millicores: int
    on_demand_memory_mib: int
    on_demand_disk_mib: int
    spot_cpu_millicores: int
    spot_memory_mib: int
    spot_disk_mib: int
    service_max_cpu_millicores: int
    service_max_memory_mib: int
    service_max_disk_mib: int
    max_running_services: int
    max_replicas_per_service: int

    def total(self, capacity: str, resource: str) -> int:
        return getattr(self, f"{capacity}_{_RESOURCE_FIELD[resource]}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


# Used when even the `default` profile is gone (a flushed test database, an operator's
# mistake): the same numbers the data migration seeds.
DEFAULT_LIMITS = Limits(
    on_demand_cpu_millicores=8000,
    on_demand_memory_mib=16 * 1024,
    on_demand_disk_mib=100 * 1024,
    spot_cpu_millicores=8000,
    spot_memory_mib=16 * 1024,
    spot_disk_mib=100 * 1024,
    service_max_cpu_millicores=4000,
    service_max_memory_mib=8 * 1024,
    service_max_disk_mib=50 * 1024,
    max_running_services=20,
    max_replicas_per_service=10,
)

CPU, MEMORY, DISK = "cpu", "memory", "disk"
RESOURCES = (CPU, MEMORY, DISK)
_RESOURCE_FIELD = {CPU: "cpu_millicores", MEMORY: "memory_mib", DISK: "disk_mib"}
_RESOURCE_LABEL = {CPU: "vCPU", MEMORY: "memory", DISK: "disk"}


@dataclass(frozen=True)
class ServiceSpec:
    """What one service asks for, per replica (its disk: per service); `running` decides whether
    its CPU and memory count."""

    capacity: str
    cpu_millicores: int
    memory_mib: int
    disk_mib: int
    replicas: int
    running: bool
    name: str = ""

    def amount(self, resource: str) -> int:
        """What the service counts for `resource`: per replica × replicas while it runs; its
        disk, one claim whatever the replicas, whether it runs or not."""
        if resource == DISK:
            return self.disk_mib
        return getattr(self, _RESOURCE_FIELD[resource]) * self.replicas if self.running else 0


@dataclass
class Usage:
    """What the services of a space count, by capacity: running ones, and every one's disk."""

    # {(capacity, resource): amount}
    amounts: dict[tuple[str, str], int] = field(default_factory=dict)
    running_services: int = 0
    # Of the running services, those whose status is Failed: set to run, so they keep their
    # place in the allocation, but the panel must not call them running.
    failed_services: int = 0
    replicas: int = 0

    def used(self, capacity: str, resource: str) -> int:
        return self.amounts.get((capacity, resource), 0)

    def add(self, spec: ServiceSpec) -> None:
        for resource in RESOURCES:
            key = (spec.capacity, resource)
            self.amounts[key] = self.amounts.get(key, 0) + spec.amount(resource)
        if spec.running:
            self.running_services += 1
            self.replicas += spec.replicas

    @classmethod
    def of(cls, specs: Iterable[ServiceSpec]) -> Usage:
        usage = cls()
        for spec in specs:
            usage.add(spec)
        return usage


# --- humanised amounts -----------------------------------------------------------------------------


def format_cpu(millicores: int) -> str:
    """`8.0 vCPU`, `0.5 vCPU`, `0.25 vCPU`: one decimal, more only when the amount has them,
    so that "needs 0.3, 0.3 is left" never appears for 300 m against 250 m."""
    value = (Decimal(millicores) / 1000).normalize()
    text = f"{value:f}"
    if "." not in text:
        text += ".0"
    return f"{text} vCPU"


def format_mib(mib: int) -> str:
    """`8 GiB`, `0.5 GiB`, `1.5 GiB`, `300 MiB`: GiB whenever it is exact to two decimals."""
    if mib == 0:
        return "0 GiB"
    if mib % 1024 == 0:
        return f"{mib // 1024} GiB"
    if mib >= 512 and (mib * 100) % 1024 == 0:
        text = f"{(Decimal(mib) / 1024).normalize():f}"
        return f"{text} GiB"
    return f"{mib} MiB"


def format_amount(resource: str, amount: int) -> str:
    return format_cpu(amount) if resource == CPU else format_mib(amount)


# --- the check -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Excess:
    """One limit a change would exceed, with the sentence that says so."""

    limit: str
    needed: int
    left: int
    allowed: int
    message: str


def _per_service(limits: Limits, spec: ServiceSpec) -> Excess | None:
    who = f" ({spec.name})" if spec.name else ""
    for resource in RESOURCES:
        needed = getattr(spec, _RESOURCE_FIELD[resource])
        allowed = getattr(limits, f"service_max_{_RESOURCE_FIELD[resource]}")
        if needed > allowed:
            label = _RESOURCE_LABEL[resource]
            return Excess(
                f"service_max_{resource}",
                needed,
                allowed,
                allowed,
                f"{label if resource == CPU else label.capitalize()} per service{who}: this needs {format_amount(resource, needed)}, "
                # A disk is one claim per service, whatever its replicas.
                f"at most {format_amount(resource, allowed)} is allowed per {'service' if resource == DISK else 'replica'}",
            )
    if spec.replicas > limits.max_replicas_per_service:
        allowed = limits.max_replicas_per_service
        return Excess(
            "max_replicas_per_service",
            spec.replicas,
            allowed,
            allowed,
            f"Replicas per service{who}: this needs {spec.replicas}, at most {allowed} are allowed",
        )
    return None


def first_excess(limits: Limits, current: Usage, proposed: Iterable[ServiceSpec]) -> Excess | None:
    """The first limit exceeded when the `proposed` services replace their current selves.

    `current` is the usage of every service of the space *except* the proposed ones (the
    caller leaves them out: their new spec is what counts). A proposed service that stays
    stopped is still held to the per-service maximums, since starting it later must not be
    the first time anyone learns that it can never run, and its disk counts like any other.
    """
    proposed = list(proposed)
    for spec in proposed:
        excess = _per_service(limits, spec)
        if excess is not None:
            return excess
    adding = Usage.of(proposed)
    for capacity in CAPACITIES:
        for resource in RESOURCES:
            needed = adding.used(capacity, resource)
            if not needed:
                continue
            allowed = limits.total(capacity, resource)
            used = current.used(capacity, resource)
            if used + needed > allowed:
                left = max(allowed - used, 0)
                return Excess(
                    f"{capacity}_{resource}",
                    needed,
                    left,
                    allowed,
                    f"{CAPACITY_LABELS[capacity]} {_RESOURCE_LABEL[resource]}: this needs "
                    f"{format_amount(resource, needed)}, {format_amount(resource, left)} of "
                    f"{format_amount(resource, allowed)} is left",
                )
    if adding.running_services:
        allowed = limits.max_running_services
        if current.running_services + adding.running_services > allowed:
            left = max(allowed - current.running_services, 0)
            return Excess(
                "max_running_services",
                adding.running_services,
                left,
                allowed,
                f"Running services: this needs {adding.running_services}, {left} of {allowed} is left",
            )
    return None


# --- the usage panel -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Meter:
    label: str
    used: int
    allowed: int
    used_text: str
    allowed_text: str
    # A line under the meter, for what the numbers alone would misstate.
    note: str = ""
    # What the pods use now (the metrics API), beside what they request: "" when unknown.
    measured_text: str = ""

    @property
    def percent(self) -> int:
        if self.allowed <= 0:
            return 100 if self.used else 0
        return min(100, round(self.used * 100 / self.allowed))

    @property
    def over(self) -> bool:
        return self.used > self.allowed


def meters(
    limits: Limits, usage: Usage, measured: dict[tuple[str, str], float] | None = None
) -> dict[str, list[Meter]]:
    """Used against allocated, grouped as the panel shows them: on-demand, spot, services.
    `measured` is what the pods use now by (capacity, resource), in millicores and MiB."""
    groups: dict[str, list[Meter]] = {}
    for capacity in CAPACITIES:
        groups[CAPACITY_LABELS[capacity]] = [
            Meter(
                _RESOURCE_LABEL[resource].capitalize() if resource != CPU else "vCPU",
                usage.used(capacity, resource),
                limits.total(capacity, resource),
                format_amount(resource, usage.used(capacity, resource)),
                format_amount(resource, limits.total(capacity, resource)),
                measured_text=(
                    format_amount(resource, round(measured[(capacity, resource)]))
                    if measured and (capacity, resource) in measured
                    else ""
                ),
            )
            for resource in RESOURCES
        ]
    most_replicas = limits.max_running_services * limits.max_replicas_per_service
    groups["Services"] = [
        # The bar and the limit count every service set to run (a failed one keeps its place
        # until it is stopped); the number says how many actually run.
        Meter(
            "Running",
            usage.running_services,
            limits.max_running_services,
            str(usage.running_services - usage.failed_services),
            str(limits.max_running_services),
            note=(
                f"{usage.failed_services} failed, still counted until stopped" if usage.failed_services else ""
            ),
        ),
        Meter("Replicas", usage.replicas, most_replicas, str(usage.replicas), str(most_replicas)),
    ]
    return groups
