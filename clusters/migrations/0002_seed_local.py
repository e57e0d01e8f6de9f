from __future__ import annotations

from django.db import migrations

LOCAL = {
    "display_name": "Local development cluster",
    "connection": "devcluster",
    "ingress_domain": "localtest.me",
    "external_host": "127.0.0.1",
    "external_service_type": "NodePort",
    "spot_node_selector": {"ale.dev/capacity": "spot"},
    "spot_tolerations": [
        {"key": "ale.dev/capacity", "operator": "Equal", "value": "spot", "effect": "NoSchedule"}
    ],
}


def seed_local(apps, schema_editor) -> None:
    # A fresh install runs against the bundled devcluster until operations registers a real one.
    Cluster = apps.get_model("clusters", "Cluster")
    Cluster.objects.get_or_create(name="local", defaults=LOCAL)


class Migration(migrations.Migration):
    dependencies = [("clusters", "0001_initial")]

    operations = [migrations.RunPython(seed_local, migrations.RunPython.noop)]
