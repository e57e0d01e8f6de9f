from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from spaces.ids import new_public_id

SPACE_NAME_RE = r"^[a-z0-9.-]{4,20}$"
PROJECT_NAME_RE = r"^[a-z0-9]{2,20}$"

validate_space_name = RegexValidator(
    SPACE_NAME_RE, "Use 4–20 characters: lowercase letters, digits, hyphens and dots."
)
validate_project_name = RegexValidator(PROJECT_NAME_RE, "Use 2–20 lowercase English letters and digits.")


class Space(models.Model):
    """The tenant: members see and manage everything in it, outsiders see nothing."""

    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=20, unique=True, validators=[validate_space_name])
    # The user whose default space this is; set only on default spaces.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner"], condition=models.Q(is_default=True), name="one_default_space_per_user"
            ),
            models.CheckConstraint(
                condition=models.Q(is_default=False) | models.Q(owner__isnull=False),
                name="default_space_has_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def delete(self, *args, **kwargs):  # type: ignore[override]
        if self.is_default:
            raise ValidationError("A user's default space cannot be deleted.")
        return super().delete(*args, **kwargs)


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["space", "user"], name="one_membership_per_user")]

    def __str__(self) -> str:
        return f"{self.user} in {self.space} ({self.role})"


class Project(models.Model):
    """A named group of environments, addressed as `@space/project`."""

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="projects")
    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=20, validators=[validate_project_name])
    display_name = models.CharField(max_length=100)
    # Loaded when the project is opened; null after it is deleted (the project then opens `main`).
    default_environment = models.ForeignKey(
        "environments.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["space", "name"], name="project_name_unique_in_space")]

    def __str__(self) -> str:
        return f"@{self.space.name}/{self.name}"

    @property
    def handle(self) -> str:
        return f"@{self.space.name}/{self.name}"


# --- resource allocation -------------------------------------------------------------------------

# The fields a profile defines and an allocation may override, in the order the admin shows
# them. CPU is in millicores and memory and disk in MiB, the units services are stored in, so
# that the arithmetic is on integers.
LIMIT_FIELDS = (
    "on_demand_cpu_millicores",
    "on_demand_memory_mib",
    "on_demand_disk_mib",
    "spot_cpu_millicores",
    "spot_memory_mib",
    "spot_disk_mib",
    "service_max_cpu_millicores",
    "service_max_memory_mib",
    "service_max_disk_mib",
    "max_running_services",
    "max_replicas_per_service",
)

_LIMIT_HELP = {
    "on_demand_cpu_millicores": "Total vCPU of running on-demand services, in millicores (1000 = 1 vCPU).",
    "on_demand_memory_mib": "Total memory of running on-demand services, in MiB (1024 = 1 GiB).",
    "on_demand_disk_mib": "Total disk of on-demand services, stopped ones included (a disk keeps its data), in MiB.",
    "spot_cpu_millicores": "Total vCPU of running spot services, in millicores.",
    "spot_memory_mib": "Total memory of running spot services, in MiB.",
    "spot_disk_mib": "Total disk of spot services, stopped ones included (a disk keeps its data), in MiB.",
    "service_max_cpu_millicores": "The most vCPU one replica of a service may ask for, in millicores.",
    "service_max_memory_mib": "The most memory one replica of a service may ask for, in MiB.",
    "service_max_disk_mib": "The most disk one service may ask for, in MiB.",
    "max_running_services": "How many services may run at once in the space.",
    "max_replicas_per_service": "The most replicas one service may have.",
}


def _limit_field(name: str, *, null: bool) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(null=null, blank=null, help_text=_LIMIT_HELP[name])


class ResourceProfile(models.Model):
    """A named set of limits (`default`, `developer`…) that operations assign to spaces.

    A space without an allocation of its own uses the profile named `default`.
    """

    DEFAULT = "default"

    name = models.SlugField(max_length=40, unique=True)
    description = models.CharField(max_length=200, blank=True)
    on_demand_cpu_millicores = _limit_field("on_demand_cpu_millicores", null=False)
    on_demand_memory_mib = _limit_field("on_demand_memory_mib", null=False)
    on_demand_disk_mib = _limit_field("on_demand_disk_mib", null=False)
    spot_cpu_millicores = _limit_field("spot_cpu_millicores", null=False)
    spot_memory_mib = _limit_field("spot_memory_mib", null=False)
    spot_disk_mib = _limit_field("spot_disk_mib", null=False)
    service_max_cpu_millicores = _limit_field("service_max_cpu_millicores", null=False)
    service_max_memory_mib = _limit_field("service_max_memory_mib", null=False)
    service_max_disk_mib = _limit_field("service_max_disk_mib", null=False)
    max_running_services = _limit_field("max_running_services", null=False)
    max_replicas_per_service = _limit_field("max_replicas_per_service", null=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ResourceAllocation(models.Model):
    """What operations allocated to one space: a profile, and any limit set here overrides it.

    A limit left empty comes from the profile, or from the `default` profile when none is chosen.
    """

    space = models.OneToOneField(Space, on_delete=models.CASCADE, related_name="allocation")
    # PROTECT: removing a profile in use would silently move its spaces to other limits.
    profile = models.ForeignKey(
        ResourceProfile, null=True, blank=True, on_delete=models.PROTECT, related_name="allocations"
    )
    on_demand_cpu_millicores = _limit_field("on_demand_cpu_millicores", null=True)
    on_demand_memory_mib = _limit_field("on_demand_memory_mib", null=True)
    on_demand_disk_mib = _limit_field("on_demand_disk_mib", null=True)
    spot_cpu_millicores = _limit_field("spot_cpu_millicores", null=True)
    spot_memory_mib = _limit_field("spot_memory_mib", null=True)
    spot_disk_mib = _limit_field("spot_disk_mib", null=True)
    service_max_cpu_millicores = _limit_field("service_max_cpu_millicores", null=True)
    service_max_memory_mib = _limit_field("service_max_memory_mib", null=True)
    service_max_disk_mib = _limit_field("service_max_disk_mib", null=True)
    max_running_services = _limit_field("max_running_services", null=True)
    max_replicas_per_service = _limit_field("max_replicas_per_service", null=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Allocation of {self.space}"


# --- invitations ---------------------------------------------------------------------------------


class Invitation(models.Model):
    """A link that lets someone without an account sign up and join a space.

    Only a hash of the token is stored, so a database dump opens no space; the token is an HMAC
    of the row under SECRET_KEY, which lets the space's owners copy the link again from the
    Team page (see `spaces.invitations`).
    """

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.MEMBER)
    token_hash = models.CharField(max_length=64, unique=True)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.email} to {self.space}"

    @property
    def is_pending(self) -> bool:
        from django.utils import timezone

        return self.accepted_at is None and self.revoked_at is None and self.expires_at > timezone.now()


# --- audit log -----------------------------------------------------------------------------------


class AuditEntry(models.Model):
    """Who did what in a space, and when.

    Projects, environments and services are referred to by public id and name as text, not by
    foreign key: the entry about deleting something must outlive what it is about.
    """

    class Action(models.TextChoices):
        SERVICE_DEPLOY = "service.deploy", "Service deployed"
        SERVICE_REDEPLOY = "service.redeploy", "Service redeployed"
        SERVICE_ROLLBACK = "service.rollback", "Service rolled back"
        SERVICE_START = "service.start", "Service started"
        SERVICE_STOP = "service.stop", "Service stopped"
        SERVICE_START_ALL = "service.start_all", "Start All"
        SERVICE_STOP_ALL = "service.stop_all", "Stop All"
        SERVICE_DELETE = "service.delete", "Service deleted"
        PROJECT_CREATE = "project.create", "Project created"
        ENVIRONMENT_CREATE = "environment.create", "Environment created"
        ENVIRONMENT_CLONE = "environment.clone", "Environment cloned"
        ENVIRONMENT_DELETE = "environment.delete", "Environment deleted"
        ENVIRONMENT_DEFAULT = "environment.default", "Default environment set"
        YAML_APPLY = "environment.yaml_apply", "YAML applied"
        SECRETS_CHANGE = "environment.secrets", "Variables or secrets changed"
        FIREWALL_CHANGE = "environment.firewall", "Firewall changed"
        TERMINAL_ACCESS = "environment.terminal_access", "Terminal access changed"
        ENVIRONMENT_PROMOTE = "environment.promote", "Environment promoted"
        HOOK_SETTINGS = "hook.settings", "Webhook settings changed"
        PREVIEW_CREATE = "preview.create", "Preview environment created"
        TERMINAL_OPEN = "terminal.open", "Terminal session opened"
        MEMBER_ADD = "member.add", "Member added"
        MEMBER_REMOVE = "member.remove", "Member removed"
        MEMBER_ROLE = "member.role", "Role changed"
        INVITATION_SEND = "invitation.send", "Invitation sent"
        INVITATION_ACCEPT = "invitation.accept", "Invitation accepted"
        INVITATION_REVOKE = "invitation.revoke", "Invitation revoked"
        SPACE_CREATE = "space.create", "Space created"
        SPACE_RENAME = "space.rename", "Space renamed"
        SPACE_DELETE = "space.delete", "Space deleted"

    space = models.ForeignKey(Space, on_delete=models.CASCADE, related_name="audit_entries")
    project_public_id = models.CharField(max_length=12, blank=True)
    project_name = models.CharField(max_length=20, blank=True)
    environment_public_id = models.CharField(max_length=12, blank=True)
    environment_name = models.CharField(max_length=40, blank=True)
    service_public_id = models.CharField(max_length=12, blank=True)
    service_name = models.CharField(max_length=63, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=40, choices=Action.choices)
    summary = models.CharField(max_length=500)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=False)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["space", "-created_at"], name="audit_space_recent")]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.actor_name or 'system'}: {self.summary}"
