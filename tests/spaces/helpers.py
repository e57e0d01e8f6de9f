"""Shared by the space tests: services deployed like the modal deploys them, and allocations."""

from __future__ import annotations

from typing import Any

from services import actions
from services.forms import ServiceForm
from services.models import Service
from spaces.models import ResourceAllocation, ResourceProfile, Space

# Small enough to reach in a test: 1 vCPU and 1 GiB each way, 4 services of at most 2 replicas.
SMALL = {
    "on_demand_cpu_millicores": 1000,
    "on_demand_memory_mib": 1024,
    "on_demand_disk_mib": 2048,
    "spot_cpu_millicores": 1000,
    "spot_memory_mib": 1024,
    "spot_disk_mib": 2048,
    "service_max_cpu_millicores": 500,
    "service_max_memory_mib": 512,
    "service_max_disk_mib": 1024,
    "max_running_services": 4,
    "max_replicas_per_service": 2,
}


def allocate(space: Space, **overrides: int) -> ResourceAllocation:
    """Give the space the `small` profile (made once), with `overrides` as its own limits."""
    profile, _ = ResourceProfile.objects.get_or_create(name="small", defaults=SMALL)
    allocation, _ = ResourceAllocation.objects.update_or_create(space=space, defaults={"profile": profile, **overrides})
    return allocation


def form_data(**overrides: Any) -> dict[str, str]:
    data = {
        "name": "api",
        "kind": "web",
        "source": "image",
        "image": "nginx:1.27",
        "port": "80",
        "cpu": "0.25",
        "memory": "256Mi",
        "disk": "",
        "replicas": "1",
        "health_check_path": "/",
        "capacity": "on_demand",
    }
    data.update({key: str(value) for key, value in overrides.items()})
    return data


def deploy(environment, by, service: Service | None = None, **overrides: Any) -> Service:
    form = ServiceForm(form_data(**overrides), environment=environment, service=service)
    assert form.is_valid(), form.errors
    return actions.deploy_service(by, environment, form.cleaned_data, service=service)
