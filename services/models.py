from __future__ import annotations

import copy
import hashlib
from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from clusters.labels import SERVICE_LABEL
from environments.manifests import environment_labels
from spaces.allocation import format_mib
from spaces.ids import new_public_id

# A DNS-1123 label: the service name becomes the Deployment's, the Service's and the private
# network hostname (`name:port`) inside the environment.
validate_service_name = RegexValidator(
    r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$",
    "Use at most 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen.",
)


# The fields a deploy sets: what a Revision records and a rollback or a YAML file restores. The
# name is not among them: it is fixed once the service exists.
SPEC_FIELDS = (
    "kind",
    "source",
    "image",
    "repository_url",
    "branch",
    "repository_path",
    "dockerfile",
    "build_args",
    "git_token_secret",
    "port",
    "command",
    "args",
    "env_vars",
    "capacity",
    "cpu_millicores",
    "memory_mib",
    "disk_mib",
    "replicas",
    "health_check_path",
    "custom_domains",
)

DNS_LABEL_MAX = 63

ONE_REPLICA_WITH_DISK = "A service with a disk runs one replica: its disk attaches to one pod at a time."


def disk_rule_errors(current_disk_mib: int, spec: dict[str, Any]) -> dict[str, str]:
    """What a spec breaks of the disk's rules, by form field (`replicas`, `disk`, `kind`).

    `current_disk_mib` is the disk the service has now (0 for a new one, or one without). A disk
    is a ReadWriteOnce claim: one pod mounts it, so one replica; a claim cannot shrink, and
    removing it (or the TCP kind that has it) would delete the data, so it only grows.
    """
    errors: dict[str, str] = {}
    kind = spec.get("kind", Service.Kind.WEB)
    disk_mib = int(spec.get("disk_mib") or 0) if kind == Service.Kind.TCP else 0
    if disk_mib and int(spec.get("replicas") or 1) > 1:
        errors["replicas"] = ONE_REPLICA_WITH_DISK
    if current_disk_mib and disk_mib < current_disk_mib:
        size = format_mib(current_disk_mib)
        ending = "Deleting the service deletes its disk and its data."
        if kind != Service.Kind.TCP:
            errors["kind"] = f"This service has a {size} disk, which a web service cannot keep: it stays a TCP service. {ending}"
        elif disk_mib == 0:
            errors["disk"] = f"This service's disk is {size} and cannot be removed. {ending}"
        else:
            errors["disk"] = f"This service's disk is {size}: a disk can grow but never shrink. {ending}"
    return errors


def spec_secret_keys(spec: dict[str, Any]) -> set[str]:
    """Environment secrets a spec needs: its `${{ secrets.KEY }}` variables and a Git token."""
    keys = {v["secret"] for v in spec.get("env_vars") or [] if "secret" in v}
    if spec.get("git_token_secret"):
        keys.add(spec["git_token_secret"])
    return keys


def _empty_list() -> list:
    return []


def _empty_dict() -> dict:
    return {}


class Service(models.Model):
    """One Deployment in the environment's namespace: its desired spec and its observed status.

    The spec fields are what the user asked for (the deploy modal, a YAML file, a clone); the
    status fields are written only by the watcher and the reconcile tasks, from the cluster.
    """

    class Kind(models.TextChoices):
        WEB = "web", "Web service (HTTP)"
        TCP = "tcp", "TCP service (database etc.)"

    class Source(models.TextChoices):
        IMAGE = "image", "Container image"
        GIT = "git", "Git repository"

    class Capacity(models.TextChoices):
        ON_DEMAND = "on_demand", "On-demand"
        SPOT = "spot", "Spot"

    class DesiredState(models.TextChoices):
        RUNNING = "running", "Running"
        STOPPED = "stopped", "Stopped"

    class Status(models.TextChoices):
        BUILDING = "building", "Building"
        DEPLOYING = "deploying", "Deploying"
        RUNNING = "running", "Running"
        STOPPING = "stopping", "Stopping"
        STOPPED = "stopped", "Stopped"
        FAILED = "failed", "Failed"
        DELETING = "deleting", "Deleting"

    environment = models.ForeignKey("environments.Environment", on_delete=models.CASCADE, related_name="services")
    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=63, validators=[validate_service_name])

    # The spec: what the user asked for.
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.WEB)
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.IMAGE)
    image = models.CharField(max_length=500, blank=True)
    repository_url = models.URLField(max_length=500, blank=True)
    branch = models.CharField(max_length=200, blank=True)
    repository_path = models.CharField(max_length=500, blank=True)
    dockerfile = models.CharField(max_length=500, blank=True, default="Dockerfile")
    # [{"name": "KEY", "value": "literal"}]: the builder's --build-arg list.
    build_args = models.JSONField(default=_empty_list, blank=True)
    # The environment secret holding a token for a private repository (key of Secret ale-env).
    git_token_secret = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    command = models.JSONField(default=_empty_list, blank=True)
    args = models.JSONField(default=_empty_list, blank=True)
    # [{"name": "KEY", "value": "literal"} | {"name": "KEY", "secret": "ENV_SECRET_KEY"}]
    env_vars = models.JSONField(default=_empty_list, blank=True)
    capacity = models.CharField(max_length=10, choices=Capacity.choices, default=Capacity.ON_DEMAND)
    cpu_millicores = models.PositiveIntegerField(default=250, validators=[MinValueValidator(100)])
    memory_mib = models.PositiveIntegerField(default=256, validators=[MinValueValidator(16)])
    disk_mib = models.PositiveIntegerField(default=0)
    replicas = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    health_check_path = models.CharField(max_length=500, default="/")
    custom_domains = models.JSONField(default=_empty_list, blank=True)
    # A push to the tracked branch builds and deploys it (through the project's webhook). A
    # setting of the service rather than of a revision: a rollback does not turn it back.
    deploy_on_push = models.BooleanField(default=True)
    desired_state = models.CharField(max_length=10, choices=DesiredState.choices, default=DesiredState.RUNNING)
    # Bumped on every change of the spec or the desired state: a reconcile task applies the
    # newest one, so a stale task run after a newer one changes nothing.
    generation = models.PositiveIntegerField(default=1)
    # Set by an explicit redeploy: it goes into the pod template, so that redeploying an
    # unchanged spec still replaces the pods (what `kubectl rollout restart` does).
    redeployed_at = models.DateTimeField(null=True, blank=True)
    # What the last successful reconcile applied: a digest per object ("apps/v1/Deployment/web"),
    # so that the next one skips what has not changed (`services.apply`). Empty: not known.
    applied_hashes = models.JSONField(default=_empty_dict, blank=True, editable=False)

    # Who last deployed it, and when (the card's user profile).
    deployed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    deployed_at = models.DateTimeField(null=True, blank=True)
    # A clone's origin, for its card until someone deploys it: the source environment's name
    # as it was then (text, so it outlives a rename or deletion of the source) and who cloned.
    cloned_from = models.CharField(max_length=40, blank=True)
    cloned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    # The observed status: written by the watcher and the tasks, never by a page request.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DEPLOYING)
    status_reason = models.TextField(blank=True)
    ready_replicas = models.PositiveIntegerField(default=0)
    status_changed_at = models.DateTimeField(null=True, blank=True)
    # The port the cluster gave the `<name>-external` Service while the environment's firewall
    # admits external TCP; written by the environment's reconcile from the applied object, so
    # that a page shows the address without asking the cluster.
    external_node_port = models.PositiveIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["environment", "name"], name="service_name_unique_in_environment"),
        ]

    # The secrets a stopped service lacks to start, when a renderer looked them up
    # (`services.guards.note_missing_secrets`): its card says so.
    missing_secrets: tuple[str, ...] | list[str] = ()

    def __str__(self) -> str:
        return self.name

    @property
    def desired_replicas(self) -> int:
        return self.replicas if self.desired_state == self.DesiredState.RUNNING else 0

    @property
    def is_spot(self) -> bool:
        return self.capacity == self.Capacity.SPOT

    @property
    def is_web(self) -> bool:
        return self.kind == self.Kind.WEB

    @property
    def has_disk(self) -> bool:
        """Only TCP services get a disk: a PersistentVolumeClaim mounted at /data."""
        return not self.is_web and self.disk_mib > 0

    @property
    def disk_mib_held(self) -> int:
        """The disk the service holds in its cluster, running or not."""
        return self.disk_mib if self.has_disk else 0

    @property
    def disk_display(self) -> str:
        return format_mib(self.disk_mib_held)

    @property
    def namespace(self) -> str:
        return self.environment.namespace

    @property
    def labels(self) -> dict[str, str]:
        """The labels on every Kubernetes object of the service; the watcher selects on them."""
        return {
            **environment_labels(self.environment),
            "app.kubernetes.io/name": self.name,
            SERVICE_LABEL: self.public_id,
        }

    @property
    def secret_keys(self) -> set[str]:
        """The environment secrets this service reads (it cannot start without them)."""
        return spec_secret_keys({"env_vars": self.env_vars, "git_token_secret": self.git_token_secret})

    @property
    def is_git(self) -> bool:
        return self.source == self.Source.GIT

    @property
    def repository_web_url(self) -> str:
        """The repository as a browser shows it: `<repo>/tree/<branch>/<path>` for GitHub-
        and GitLab-style https URLs (both answer that path), else the URL as given."""
        url = self.repository_url.strip()
        if not url.startswith(("https://", "http://")) or not self.branch:
            return url
        base = url[:-4] if url.endswith(".git") else url.rstrip("/")
        path = self.repository_path.strip("/")
        return f"{base}/tree/{self.branch}" + (f"/{path}" if path else "")

    @property
    def private_address(self) -> str:
        """`name:port`: how the environment's other services reach this one."""
        return f"{self.name}:{self.port}"

    @property
    def generated_host(self) -> str:
        """The host every web service gets: `<name>-<environment id>.<ingress domain>`.

        Empty when the cluster has no ingress domain. The first part must stay one DNS label
        (63 characters); a name too long for that is shortened and given a hash of the full
        name, so that two long names sharing a prefix still get distinct hosts.
        """
        domain = self.environment.cluster.ingress_domain.strip(".")
        if not domain:
            return ""
        suffix = f"-{self.environment.public_id}"
        label = f"{self.name}{suffix}"
        if len(label) > DNS_LABEL_MAX:
            digest = hashlib.sha256(self.name.encode()).hexdigest()[:8]
            keep = DNS_LABEL_MAX - len(suffix) - len(digest) - 1
            label = f"{self.name[:keep].rstrip('-')}-{digest}{suffix}"
        return f"{label}.{domain}"

    @property
    def hosts(self) -> list[str]:
        """Every host the Ingress answers for: the generated one, then the custom domains."""
        if not self.is_web:
            return []
        generated = self.generated_host
        return ([generated] if generated else []) + list(self.custom_domains)

    @property
    def access_url(self) -> str:
        """The Access URL of a web service; empty for TCP services.

        The first custom domain when there is one (`https://shop.example.com`), else the
        generated host (`http://api-k3xq9w2m4p7d.localtest.me`), else empty when the cluster
        has no ingress domain. https when the cluster serves TLS (`Cluster.tls`), so that the
        link never promises a certificate nobody issued; with the cluster's `access_port` when
        its ingress listens on another port than the scheme's (the bundled cluster's does).
        """
        if not self.is_web:
            return ""
        host = self.custom_domains[0] if self.custom_domains else self.generated_host
        return self.environment.cluster.access_url_for(host) if host else ""

    @property
    def external_address(self) -> str:
        """`host:port` reachable from outside the cluster; empty unless the firewall is open."""
        cluster = self.environment.cluster
        if self.is_web or not self.environment.allow_external_tcp or not self.external_node_port:
            return ""
        if not cluster.external_host:
            return ""
        return f"{cluster.external_host}:{self.external_node_port}"

    def snapshot(self) -> dict[str, Any]:
        """The spec as a plain dict: what a Revision stores and `apply_snapshot` restores."""
        return {field: copy.deepcopy(getattr(self, field)) for field in SPEC_FIELDS}

    def apply_snapshot(self, spec: dict[str, Any]) -> None:
        """Set the spec fields from `spec` (unsaved). Fields `spec` lacks keep their value, so
        a revision written before a field existed still restores what it knew."""
        for field in SPEC_FIELDS:
            if field in spec:
                setattr(self, field, copy.deepcopy(spec[field]))


class Revision(models.Model):
    """One deploy of a service: the spec as it was, who made it and when.

    Called "Deployment" in the design notes; named Revision here so that it is never confused
    with the Kubernetes Deployment the service runs as.
    """

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    spec = models.JSONField(default=_empty_dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # What made it: a deploy from the modal, a redeploy, a rollback to an earlier revision, a
    # YAML apply, a clone, or a push ("push of 1a2b3c4 by alice").
    cause = models.CharField(max_length=200, default="deploy")

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["service", "number"], name="revision_number_unique")]

    def __str__(self) -> str:
        return f"{self.service} #{self.number}"


class TerminalSession(models.Model):
    """One terminal opened in a container of a service: who, where, from when to when.

    The audit record of shells; a row is written when the shell starts and closed when either
    side ends it, so an open row with no `closed_at` is a session still running (or a server
    that died under it).
    """

    class CloseReason(models.TextChoices):
        EXITED = "exited", "The shell exited"
        CLIENT = "client", "The browser closed it"
        IDLE = "idle", "Idle for too long"
        ERROR = "error", "The connection to the cluster failed"
        SERVER = "server", "The server shut down"

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="terminal_sessions")
    # Kept when the user is deleted: the record is about what happened, not about who still exists.
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    username = models.CharField(max_length=150, blank=True)
    pod = models.CharField(max_length=253)
    container = models.CharField(max_length=253, blank=True)
    opened_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=10, choices=CloseReason.choices, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.username or self.user_id} in {self.pod}/{self.container}"


class Build(models.Model):
    """One image build of a Git service: a Job in the environment's namespace.

    The Job's pod log is the build log. Only the last `KEEP` builds of a service are kept,
    their Jobs with them, so that their logs stay readable in the log viewer.
    """

    KEEP = 10

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        BUILDING = "building", "Building"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    ACTIVE = (Status.QUEUED, Status.BUILDING)

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="builds")
    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    number = models.PositiveIntegerField()
    repository_url = models.CharField(max_length=500)
    branch = models.CharField(max_length=200)
    # The commit the builder reported, when it did; ale cannot resolve a branch head itself
    # (no `git ls-remote` from the web or worker processes), so this may stay empty and the
    # page then says which branch was built, at what time.
    commit = models.CharField(max_length=40, blank=True)
    image = models.CharField(max_length=500)
    job_name = models.CharField(max_length=63)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    # The last lines of the build log when it failed, or why it was cancelled.
    reason = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["service", "number"], name="build_number_unique")]

    def __str__(self) -> str:
        return f"{self.service} build #{self.number}"

    @property
    def is_active(self) -> bool:
        return self.status in self.ACTIVE

    @property
    def duration_seconds(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0, int((self.finished_at - self.started_at).total_seconds()))


# --- CPU and memory over time (services/metrics.py writes these) ---------------------------------


class Resolution(models.IntegerChoices):
    """Seconds one sample stands for: the sampler's raw reads, and the beat's minute and
    ten-minute roll-ups of them."""

    RAW = 0, "raw"
    MINUTE = 60, "1 minute"
    TEN_MINUTES = 600, "10 minutes"


class MetricSample(models.Model):
    """A service's CPU and memory at one moment: the sum over its pods.

    `at` is epoch seconds (the start of the bucket for a roll-up): an integer that SQLite and
    PostgreSQL bucket alike (`at - at % 60`) and that costs 8 bytes. A roll-up holds the mean CPU
    and the peak memory of its bucket: memory is what an out-of-memory kill is about, and a
    mean would hide the peak that caused it.
    """

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    resolution = models.PositiveSmallIntegerField(choices=Resolution.choices)
    at = models.BigIntegerField()
    cpu_cores = models.FloatField()
    memory_bytes = models.BigIntegerField()
    pods = models.PositiveSmallIntegerField(default=0)

    class Meta:
        constraints = [
            # Also the index of every chart: one service, one resolution, a range of `at`.
            models.UniqueConstraint(fields=["service", "resolution", "at"], name="metric_sample_unique"),
        ]
        indexes = [
            # Pruning and the roll-ups walk one resolution by age across all services.
            models.Index(fields=["resolution", "at"], name="metric_sample_age"),
        ]


class PodMetricSample(models.Model):
    """One pod's CPU and memory: the per-pod lines of the Metrics tab."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    pod = models.CharField(max_length=253)
    resolution = models.PositiveSmallIntegerField(choices=Resolution.choices)
    at = models.BigIntegerField()
    cpu_cores = models.FloatField()
    memory_bytes = models.BigIntegerField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["service", "resolution", "at", "pod"], name="pod_metric_sample_unique"),
        ]
        indexes = [models.Index(fields=["resolution", "at"], name="pod_metric_sample_age")]


class ContainerTermination(models.Model):
    """A container of the service that ended and was restarted: the markers on the charts, and
    the out-of-memory explanation on the card.

    Read from the pod's `lastState.terminated` at each sample; (pod, container, restart count)
    names one termination, so seeing it again at the next sample writes nothing.
    """

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    pod = models.CharField(max_length=253)
    container = models.CharField(max_length=253)
    restart_count = models.PositiveIntegerField()
    reason = models.CharField(max_length=64, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    at = models.BigIntegerField()
    # The container's memory limit when it ended: "used its 256 MiB limit" stays true after the
    # user raised the limit.
    memory_limit_bytes = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["service", "pod", "container", "restart_count"], name="container_termination_unique"
            ),
        ]
        indexes = [models.Index(fields=["service", "at"], name="container_termination_recent")]

    @property
    def is_oom(self) -> bool:
        return self.reason == "OOMKilled"


class MetricsSource(models.Model):
    """How reading a cluster's metrics API goes: when to read it next, and why not.

    One row per cluster. `next_attempt_at` is both the schedule and the claim: the beat's tick
    moves it forward with a compare-and-set before it enqueues the cluster's read, so two ticks
    never read one cluster twice, and a failing cluster's backoff is simply a later time.
    """

    class State(models.TextChoices):
        OK = "ok", "Sampling"
        UNAVAILABLE = "unavailable", "No metrics API"
        FAILING = "failing", "Failing"

    cluster = models.OneToOneField("clusters.Cluster", on_delete=models.CASCADE, related_name="metrics_source")
    state = models.CharField(max_length=12, choices=State.choices, default=State.OK)
    failures = models.PositiveIntegerField(default=0)
    message = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_sampled_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.cluster_id}: {self.state}"


class RevisionUsage(models.Model):
    """What a revision used once its deploy had settled: the mean CPU and memory from a few
    minutes after it was deployed until it was measured. The card compares the last two."""

    service = models.ForeignKey(Service, on_delete=models.CASCADE, related_name="+")
    number = models.PositiveIntegerField()
    cpu_cores = models.FloatField()
    memory_bytes = models.BigIntegerField()
    # The deploy it measured (`Service.deployed_at` then): a newer deploy is not measured yet.
    measured_from = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["service", "number"], name="revision_usage_unique")]
