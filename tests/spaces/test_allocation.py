"""The allocation arithmetic: pure functions on numbers, no database."""

from __future__ import annotations

from dataclasses import replace

import pytest

from spaces.allocation import (
    DEFAULT_LIMITS,
    ON_DEMAND,
    SPOT,
    Limits,
    ServiceSpec,
    Usage,
    first_excess,
    format_cpu,
    format_mib,
    meters,
)

LIMITS = Limits(
    on_demand_cpu_millicores=4000,
    on_demand_memory_mib=8192,
    on_demand_disk_mib=20480,
    spot_cpu_millicores=2000,
    spot_memory_mib=8192,
    spot_disk_mib=10240,
    service_max_cpu_millicores=2000,
    service_max_memory_mib=4096,
    service_max_disk_mib=10240,
    max_running_services=5,
    max_replicas_per_service=4,
)


def spec(capacity: str = ON_DEMAND, cpu: int = 500, memory: int = 512, disk: int = 0, replicas: int = 1, running: bool = True, name: str = "") -> ServiceSpec:
    return ServiceSpec(capacity, cpu, memory, disk, replicas, running, name)


@pytest.mark.parametrize(
    ("millicores", "text"),
    [(8000, "8.0 vCPU"), (500, "0.5 vCPU"), (250, "0.25 vCPU"), (1500, "1.5 vCPU"), (0, "0.0 vCPU"), (100, "0.1 vCPU")],
)
def test_it_formats_vcpu_with_one_decimal_and_more_only_when_needed(millicores, text):
    assert format_cpu(millicores) == text


@pytest.mark.parametrize(
    ("mib", "text"),
    [(8192, "8 GiB"), (512, "0.5 GiB"), (1536, "1.5 GiB"), (768, "0.75 GiB"), (300, "300 MiB"), (1000, "1000 MiB"), (0, "0 GiB")],
)
def test_it_formats_memory_in_gib_when_exact_else_mib(mib, text):
    assert format_mib(mib) == text


def test_it_counts_running_services_by_capacity_and_times_their_replicas():
    usage = Usage.of([spec(cpu=500, memory=512, replicas=3), spec(SPOT, cpu=250, memory=256), spec(running=False, cpu=4000)])
    assert usage.used(ON_DEMAND, "cpu") == 1500
    assert usage.used(ON_DEMAND, "memory") == 1536
    assert usage.used(SPOT, "cpu") == 250
    assert (usage.running_services, usage.replicas) == (2, 4)


def test_it_lets_a_change_that_fits_through():
    assert first_excess(LIMITS, Usage.of([spec(cpu=1000)]), [spec(cpu=2000, replicas=1)]) is None


def test_it_names_the_spot_memory_limit_with_what_is_needed_and_left():
    current = Usage.of([spec(SPOT, memory=3840, replicas=2)])  # 7.5 GiB of 8
    excess = first_excess(LIMITS, current, [spec(SPOT, memory=2048)])
    assert excess is not None
    assert excess.limit == "spot_memory"
    assert excess.message == "Spot memory: this needs 2 GiB, 0.5 GiB of 8 GiB is left"


def test_it_keeps_on_demand_and_spot_apart():
    full_on_demand = Usage.of([spec(cpu=2000, replicas=2)])  # all 4 vCPU on-demand
    assert first_excess(LIMITS, full_on_demand, [spec(SPOT, cpu=1000)]) is None
    excess = first_excess(LIMITS, full_on_demand, [spec(ON_DEMAND, cpu=100)])
    assert excess.message == "On-demand vCPU: this needs 0.1 vCPU, 0.0 vCPU of 4.0 vCPU is left"


def test_it_multiplies_by_replicas_against_the_totals():
    excess = first_excess(LIMITS, Usage(), [spec(cpu=1500, replicas=3)])
    assert excess.message == "On-demand vCPU: this needs 4.5 vCPU, 4.0 vCPU of 4.0 vCPU is left"


def test_it_holds_one_replica_to_the_per_service_maximums():
    excess = first_excess(LIMITS, Usage(), [spec(cpu=2500, name="api")])
    assert excess.limit == "service_max_cpu"
    assert excess.message == "vCPU per service (api): this needs 2.5 vCPU, at most 2.0 vCPU is allowed per replica"
    excess = first_excess(LIMITS, Usage(), [spec(memory=5120)])
    assert excess.message == "Memory per service: this needs 5 GiB, at most 4 GiB is allowed per replica"
    excess = first_excess(LIMITS, Usage(), [spec(disk=20480)])
    assert excess.limit == "service_max_disk"


def test_it_holds_even_a_stopped_service_to_the_per_service_maximums():
    assert first_excess(LIMITS, Usage(), [spec(cpu=3000, running=False)]).limit == "service_max_cpu"


def test_it_lets_stopped_services_past_the_totals():
    full = Usage.of([spec(cpu=2000, replicas=2)])
    assert first_excess(LIMITS, full, [spec(cpu=2000, running=False)]) is None


def test_it_limits_replicas_per_service():
    excess = first_excess(LIMITS, Usage(), [spec(cpu=100, memory=64, replicas=5)])
    assert excess.message == "Replicas per service: this needs 5, at most 4 are allowed"


def test_it_limits_the_number_of_running_services():
    current = Usage.of([spec(cpu=100, memory=64) for _ in range(4)])
    assert first_excess(LIMITS, current, [spec(cpu=100, memory=64)]) is None
    excess = first_excess(LIMITS, current, [spec(cpu=100, memory=64), spec(cpu=100, memory=64)])
    assert excess.message == "Running services: this needs 2, 1 of 5 is left"


def test_it_adds_up_a_batch_before_comparing():
    # Start All: each fits alone, together they do not.
    batch = [spec(cpu=1500), spec(cpu=1500), spec(cpu=1500)]
    for one in batch:
        assert first_excess(LIMITS, Usage(), [one]) is None
    assert first_excess(LIMITS, Usage(), batch).message == "On-demand vCPU: this needs 4.5 vCPU, 4.0 vCPU of 4.0 vCPU is left"


def test_it_counts_disk_against_its_capacity():
    current = Usage.of([spec(SPOT, disk=8192)])
    excess = first_excess(LIMITS, current, [spec(SPOT, disk=4096)])
    assert excess.message == "Spot disk: this needs 4 GiB, 2 GiB of 10 GiB is left"


def test_it_counts_the_disk_of_a_stopped_service_and_nothing_else_of_it():
    usage = Usage.of([spec(SPOT, cpu=500, memory=512, disk=2048, running=False)])
    assert (usage.used(SPOT, "disk"), usage.used(SPOT, "cpu"), usage.used(SPOT, "memory")) == (2048, 0, 0)
    assert (usage.running_services, usage.replicas) == (0, 0)


def test_it_counts_a_disk_once_whatever_the_replicas():
    assert Usage.of([spec(disk=1024, replicas=3)]).used(ON_DEMAND, "disk") == 1024


def test_it_refuses_a_stopped_service_whose_disk_does_not_fit():
    current = Usage.of([spec(SPOT, disk=8192, running=False)])
    excess = first_excess(LIMITS, current, [spec(SPOT, disk=4096, running=False)])
    assert excess.message == "Spot disk: this needs 4 GiB, 2 GiB of 10 GiB is left"


def test_it_says_the_disk_maximum_is_per_service():
    excess = first_excess(LIMITS, Usage(), [spec(disk=20480, name="db")])
    assert excess.message == "Disk per service (db): this needs 20 GiB, at most 10 GiB is allowed per service"


def test_it_says_nothing_is_left_when_a_lowered_allocation_is_already_exceeded():
    lowered = replace(LIMITS, on_demand_cpu_millicores=1000)
    current = Usage.of([spec(cpu=2000)])
    assert first_excess(lowered, current, [spec(cpu=100)]).message == (
        "On-demand vCPU: this needs 0.1 vCPU, 0.0 vCPU of 1.0 vCPU is left"
    )


def test_it_shows_used_against_allocated_per_capacity_and_for_services():
    groups = meters(DEFAULT_LIMITS, Usage.of([spec(cpu=500, memory=512, replicas=2)]))
    assert list(groups) == ["On-demand", "Spot", "Services"]
    vcpu, memory, disk = groups["On-demand"]
    assert (vcpu.used_text, vcpu.allowed_text, vcpu.percent) == ("1.0 vCPU", "8.0 vCPU", 12)
    assert (memory.used_text, memory.allowed_text) == ("1 GiB", "16 GiB")
    running, replicas = groups["Services"]
    assert (running.used, running.allowed, replicas.used) == (1, 20, 2)
    assert not any(meter.over for group in groups.values() for meter in group)
