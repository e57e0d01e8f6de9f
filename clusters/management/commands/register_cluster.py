"""`manage.py register_cluster`: record a cluster without the admin, e.g. from a deploy Job.

    manage.py register_cluster --in-cluster --name this --ingress-domain apps.example.com
    manage.py register_cluster --name prod --kubeconfig /path/to/kubeconfig --context prod
    manage.py register_cluster --name local --devcluster --ingress-domain localhost --access-port 8081

Idempotent: running it again updates the fields given and leaves the others alone, so the
migration Job can run it on every release.

It then asks the cluster for every permission ale uses there and names any that is missing
(on stderr), so a gap in RBAC shows at registration rather than as a failed deploy. A missing
permission or an unreachable cluster does not fail the registration: the migration Job runs
this before the RBAC it needs may have been applied.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clusters.models import Cluster
from clusters.permissions import check_access


class Command(BaseCommand):
    help = "Register (or update) a cluster: this one through the pod's service account, or a kubeconfig."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True, help="Slug of the cluster, e.g. 'this'.")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "--in-cluster", action="store_true", help="The cluster ale runs in, through the pod's service account."
        )
        source.add_argument("--kubeconfig", type=Path, help="A kubeconfig file whose content is stored.")
        source.add_argument(
            "--devcluster", action="store_true", help="The bundled development cluster (`make run` starts it)."
        )
        parser.add_argument("--context", help="Kubeconfig context (default: its current one).")
        parser.add_argument("--display-name", help="Name shown to users.")
        parser.add_argument("--ingress-domain", help="Access URLs are <service>-<environment id>.<this domain>.")
        parser.add_argument(
            "--access-port", type=int, help="Port of Access URLs when the ingress is not on 80/443; 0 for the default."
        )
        parser.add_argument("--external-host", help="Host shown in external TCP addresses.")
        parser.add_argument("--external-service-type", choices=Cluster.ExternalServiceType.values)
        parser.add_argument("--tls", choices=Cluster.Tls.values, help="How Access URLs get https.")
        parser.add_argument("--tls-issuer", help="With --tls cert_manager: the ClusterIssuer that signs certificates.")
        parser.add_argument("--ingress-controller-namespace", help="Namespace of the ingress controller.")
        parser.add_argument("--storage-class", help="StorageClass of services' disks (default: the cluster's).")

    def handle(self, *args: Any, **options: Any) -> None:
        fields: dict[str, Any] = {}
        if options["in_cluster"]:
            fields.update(connection=Cluster.Connection.IN_CLUSTER, kubeconfig="", context="")
        elif options["devcluster"]:
            fields.update(connection=Cluster.Connection.DEVCLUSTER, kubeconfig="", context="")
        else:
            try:
                fields.update(connection=Cluster.Connection.KUBECONFIG, kubeconfig=options["kubeconfig"].read_text())
            except OSError as exc:
                raise CommandError(f"cannot read the kubeconfig: {exc}") from exc
            if options["context"] is not None:
                fields["context"] = options["context"]
        for option in (
            "display_name",
            "ingress_domain",
            "external_host",
            "external_service_type",
            "tls",
            "tls_issuer",
            "ingress_controller_namespace",
            "storage_class",
        ):
            if options[option] is not None:
                fields[option] = options[option]
        if options["access_port"] is not None:
            fields["access_port"] = options["access_port"] or None

        with transaction.atomic():
            cluster = Cluster.objects.select_for_update().filter(name=options["name"]).first()
            created = cluster is None
            cluster = cluster or Cluster(name=options["name"])
            for field, value in fields.items():
                setattr(cluster, field, value)
            try:
                cluster.full_clean()
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
            cluster.save()
        verb = "Registered" if created else "Updated"
        self.stdout.write(f"{verb} cluster '{cluster.name}' ({cluster.get_connection_display()}).")
        result = check_access(cluster)
        if result.complete:
            self.stdout.write(self.style.SUCCESS(result.summary()))
            return
        if result.error:
            self.stderr.write(self.style.WARNING(result.summary()))
            return
        self.stderr.write(self.style.WARNING(f"{result.headline()}:"))
        for permission in result.missing:
            self.stderr.write(f"  {permission}")
