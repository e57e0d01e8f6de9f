from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, RegexValidator, validate_slug
from django.db import models


def _default_tolerations() -> list:
    return []


def _default_node_selector() -> dict:
    return {}


# Public names that resolve every subdomain to 127.0.0.1, and top-level domains reserved for
# private networks or tests (RFC 6761, RFC 6762, ICANN's .internal), which resolve nowhere public.
LOOPBACK_DOMAINS = ("localtest.me", "lvh.me")
PRIVATE_TLDS = frozenset({"local", "internal", "lan", "test", "example", "invalid", "intranet", "corp", "home"})


class Cluster(models.Model):
    """A Kubernetes cluster registered by operations (in the Django admin).

    The admin renders help texts as HTML: placeholders are written in capitals, never in angle
    brackets, which would vanish as tags.
    """

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
        max_length=253, blank=True, help_text="Access URLs are SERVICE-ENVIRONMENT_ID.THIS_DOMAIN."
    )
    access_port = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MaxValueValidator(65535)],
        help_text="Port of the Access URLs when the ingress does not listen on the scheme's default (80 or 443): "
        "a NodePort, or the bundled cluster's emulated ingress, which make run sets. Blank: the default.",
    )
    ingress_controller_namespace = models.CharField(
        max_length=63,
        blank=True,
        default="ingress-nginx",
        validators=[
            RegexValidator(
                r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
                "A namespace name: lowercase letters, digits and hyphens, starting and ending with a letter or digit.",
            )
        ],
        help_text="Namespace of the ingress controller that serves Access URLs (ingress-nginx; kube-system for "
        "k3s's Traefik). Each environment's isolation policy admits traffic from it. Blank: from no controller.",
    )
    # A StorageClass name is a DNS subdomain: lowercase dot-separated labels, 253 characters in all.
    storage_class = models.CharField(
        max_length=253,
        blank=True,
        validators=[
            RegexValidator(
                r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
                "A StorageClass name: lowercase letters, digits, hyphens and dots, starting and ending with a "
                "letter or digit.",
            )
        ],
        help_text="StorageClass of the services' disks (their PersistentVolumeClaims). Blank: the cluster's "
        "default StorageClass. A claim's class never changes: a change here applies to disks made afterwards.",
    )
    class Tls(models.TextChoices):
        NONE = "none", "None: Access URLs are plain http"
        CERT_MANAGER = "cert_manager", "cert-manager issues a certificate per service"
        UPSTREAM = "upstream", "Terminated before the ingress (a load balancer, the controller's default certificate)"

    tls = models.CharField(
        "TLS",
        max_length=20,
        choices=Tls.choices,
        default=Tls.NONE,
        help_text="How Access URLs and custom domains get https.",
    )
    tls_issuer = models.CharField(
        "TLS issuer",
        max_length=253,
        blank=True,
        validators=[
            RegexValidator(
                r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
                "A ClusterIssuer name: lowercase letters, digits, hyphens and dots.",
            )
        ],
        help_text="With cert-manager: the ClusterIssuer that signs the certificates (e.g. letsencrypt-prod).",
    )
    external_host = models.CharField(
        max_length=253, blank=True, help_text="Host shown in external TCP addresses (host:port)."
    )
    external_service_type = models.CharField(
        max_length=20, choices=ExternalServiceType.choices, default=ExternalServiceType.NODE_PORT
    )
    spot_node_selector = models.JSONField(default=_default_node_selector, blank=True)
    spot_tolerations = models.JSONField(default=_default_tolerations, blank=True)
    # Builds from Git: operations choose the builder, where images are pushed and with what
    # credentials, and how much a build may use; the cluster pulls the built image from there.
    builder_image = models.CharField(
        max_length=500,
        default="gcr.io/kaniko-project/executor:v1.23.2",
        help_text="The image builder run as a Job for each build (kaniko's executor).",
    )
    registry = models.CharField(
        max_length=500,
        blank=True,
        help_text="Where built images are pushed, e.g. registry.example.com/ale; "
        "images are REGISTRY/ENVIRONMENT_ID/SERVICE:TAG. Blank: no builds on this cluster.",
    )
    registry_secret = models.CharField(
        max_length=253,
        blank=True,
        help_text="Name of a kubernetes.io/dockerconfigjson Secret in each environment's namespace "
        "with push credentials for the registry; blank for none.",
    )
    build_cpu_millicores = models.PositiveIntegerField(default=1000)
    build_memory_mib = models.PositiveIntegerField(default=2048)
    build_deadline_seconds = models.PositiveIntegerField(
        default=1800, help_text="A build running longer than this is stopped and fails."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @property
    def url_scheme(self) -> str:
        """The scheme of the Access URLs its ingress serves."""
        return "http" if self.tls == self.Tls.NONE else "https"

    def access_url_for(self, host: str) -> str:
        """The URL of `host` on this cluster's ingress: its scheme, and its port when set."""
        port = f":{self.access_port}" if self.access_port else ""
        return f"{self.url_scheme}://{host}{port}"

    @property
    def access_hint(self) -> str:
        """Why the Access links of this cluster may not open in a visitor's browser, or "".

        Checked by name only, never by a DNS lookup (a page render must not wait on one): a domain
        reserved for local or private use resolves nowhere on the public Internet. The bundled
        cluster with its emulated ingress (`access_port` set) serves its `localhost` names itself.
        """
        domain = self.ingress_domain.strip(".").lower()
        if not domain:
            return "This cluster has no ingress domain, so web services get no Access link."
        if self.connection == self.Connection.DEVCLUSTER and self.access_port:
            return ""
        if domain == "localhost" or domain.endswith(".localhost"):
            return f"*.{domain} names the visitor's own computer: the Access link opens only there."
        if domain in LOOPBACK_DOMAINS or domain.endswith(tuple(f".{name}" for name in LOOPBACK_DOMAINS)):
            return (
                f"*.{domain} resolves to 127.0.0.1: the Access link opens only on a computer whose port "
                f"{self.access_port or (80 if self.url_scheme == 'http' else 443)} reaches the cluster's ingress."
            )
        if domain.rsplit(".", 1)[-1] in PRIVATE_TLDS or domain.endswith(".home.arpa"):
            return f"{domain} is not a public domain: the Access link opens only where its DNS resolves it."
        return ""

    def clean(self) -> None:
        if self.tls == self.Tls.CERT_MANAGER and not self.tls_issuer:
            raise ValidationError({"tls_issuer": "cert-manager needs the name of the ClusterIssuer to ask."})

    @classmethod
    def default(cls) -> Cluster | None:
        """The cluster a new project's `main` environment goes to: the first one registered."""
        return cls.objects.order_by("created_at", "pk").first()
