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
