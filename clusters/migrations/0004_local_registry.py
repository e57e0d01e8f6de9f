from __future__ import annotations

from django.db import migrations


def set_local_registry(apps, schema_editor) -> None:
    # The bundled devcluster "pushes" to this registry: its build Jobs accept any destination.
    # Smaller builds than the defaults, so that a build fits next to a demo space's services
    # inside the namespace's quota.
    Cluster = apps.get_model("clusters", "Cluster")
    Cluster.objects.filter(name="local", connection="devcluster", registry="").update(
        registry="registry.local:5000/ale", build_cpu_millicores=500, build_memory_mib=512
    )


class Migration(migrations.Migration):
    dependencies = [("clusters", "0003_builder_settings")]

    operations = [migrations.RunPython(set_local_registry, migrations.RunPython.noop)]
