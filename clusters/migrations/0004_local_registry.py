from __future__ import annotations

from django.db import migrations


def set_local_registry(apps, schema_editor) -> None:
    # The bundled devcluster "pushes" to this registry: its build Jobs accept any destination.
    Cluster = apps.get_model("clusters", "Cluster")
    Cluster.objects.filter(name="local", connection="devcluster", registry="").update(registry="registry.local:5000/ale")


class Migration(migrations.Migration):
    dependencies = [("clusters", "0003_builder_settings")]

    operations = [migrations.RunPython(set_local_registry, migrations.RunPython.noop)]
