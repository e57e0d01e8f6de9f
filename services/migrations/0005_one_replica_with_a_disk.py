"""A service with a disk runs one replica (its ReadWriteOnce claim attaches to one pod): services
saved with more, before the rule, are brought to one."""

from django.db import migrations


def one_replica_with_a_disk(apps, schema_editor) -> None:
    Service = apps.get_model("services", "Service")
    Service.objects.filter(kind="tcp", disk_mib__gt=0, replicas__gt=1).update(replicas=1)


class Migration(migrations.Migration):
    dependencies = [("services", "0004_builds")]

    operations = [migrations.RunPython(one_replica_with_a_disk, migrations.RunPython.noop)]
