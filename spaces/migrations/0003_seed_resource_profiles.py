"""The `default` profile every space without an allocation uses, and a smaller `developer` one."""

from __future__ import annotations

from django.db import migrations

GIB = 1024

PROFILES = {
    # Generous: a fresh install should never refuse a first deploy.
    "default": {
        "description": "Used by every space without an allocation of its own.",
        "on_demand_cpu_millicores": 8000,
        "on_demand_memory_mib": 16 * GIB,
        "on_demand_disk_mib": 100 * GIB,
        "spot_cpu_millicores": 8000,
        "spot_memory_mib": 16 * GIB,
        "spot_disk_mib": 100 * GIB,
        "service_max_cpu_millicores": 4000,
        "service_max_memory_mib": 8 * GIB,
        "service_max_disk_mib": 50 * GIB,
        "max_running_services": 20,
        "max_replicas_per_service": 10,
    },
    "developer": {
        "description": "A personal sandbox: a few small services.",
        "on_demand_cpu_millicores": 2000,
        "on_demand_memory_mib": 4 * GIB,
        "on_demand_disk_mib": 20 * GIB,
        "spot_cpu_millicores": 2000,
        "spot_memory_mib": 4 * GIB,
        "spot_disk_mib": 20 * GIB,
        "service_max_cpu_millicores": 1000,
        "service_max_memory_mib": 2 * GIB,
        "service_max_disk_mib": 10 * GIB,
        "max_running_services": 5,
        "max_replicas_per_service": 3,
    },
}


def seed(apps, schema_editor) -> None:
    ResourceProfile = apps.get_model("spaces", "ResourceProfile")
    for name, values in PROFILES.items():
        ResourceProfile.objects.get_or_create(name=name, defaults=values)


class Migration(migrations.Migration):
    dependencies = [("spaces", "0002_allocation_invitations_audit")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
