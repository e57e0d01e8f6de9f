from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from spaces.ids import new_public_id

MAIN = "main"


class Environment(models.Model):
    """One Kubernetes namespace of a project, on one cluster."""

    project = models.ForeignKey("spaces.Project", on_delete=models.CASCADE, related_name="environments")
    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    name = models.CharField(max_length=40)
    # Clusters are removed by operations only once nothing lives on them any more.
    cluster = models.ForeignKey("clusters.Cluster", on_delete=models.PROTECT, related_name="environments")
    # Hex colour shown in the selector and the header; blank for `main`, which has none.
    # It goes into a style attribute, hence the strict format.
    color = models.CharField(
        max_length=7, blank=True, validators=[RegexValidator(r"^#[0-9a-f]{6}$", "A colour like #3b82f6.")]
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Set when a user deletes the environment: the row stays (shown as going) until the
    # deletion task has seen its namespace disappear from the cluster.
    deleting_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "project", name="environment_name_unique_in_project"),
            models.UniqueConstraint(
                fields=["project", "color"],
                condition=~models.Q(color=""),
                name="environment_color_unique_in_project",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def namespace(self) -> str:
        return f"ale-{self.public_id}"

    @property
    def is_deleting(self) -> bool:
        return self.deleting_at is not None

    @property
    def is_default(self) -> bool:
        return self.project.default_environment_id == self.pk
