from __future__ import annotations

from django.core.validators import validate_slug
from django.db import models


def _default_tolerations() -> list:
    return []


def _default_node_selector() -> dict:
    return {}


class Cluster(models.Model):
    """A Kubernetes cluster registered by operations (in the Django admin)."""

    class Connection(models.TextChoices):
        DEVCLUSTER = "devcluster", "Bundled development cluster"
        KUBECONFIG = "kubeconfig", "Kubeconfig"
        IN_CLUSTER = "in_cluster", "In-cluster service account"

    class ExternalServiceType(models.TextChoices):
        NODE_PORT = "NodePort", "NodePort"
        LOAD_BALANCER = "LoadBalancer", "LoadBalancer"

    name = models.CharField(max_length=63, unique=True, validators=[validate_slug])
    display_name = models.CharField(max_length=100, blank=True)
    connection = models.CharField(max_length=20, choices=Connection.choices, default=Connection.KUBECONFIG)
    kubeconfig = models.TextField(blank=True, help_text="Only for the kubeconfig connection.")
    context = models.CharField(max_length=200, blank=True, help_text="Kubeconfig context; blank for its current one.")
    ingress_domain = models.CharField(
        max_length=253, blank=True, help_text="Access URLs are <service>-<environment id>.<this domain>."
    )
    external_host = models.CharField(
        max_length=253, blank=True, help_text="Host shown in external TCP addresses (host:port)."
    )
    external_service_type = models.CharField(
        max_length=20, choices=ExternalServiceType.choices, default=ExternalServiceType.NODE_PORT
    )
    spot_node_selector = models.JSONField(default=_default_node_selector, blank=True)
    spot_tolerations = models.JSONField(default=_default_tolerations, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @classmethod
    def default(cls) -> Cluster | None:
        """The cluster a new project's `main` environment goes to: the first one registered."""
        return cls.objects.order_by("created_at", "pk").first()
