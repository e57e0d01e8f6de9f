from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from spaces.ids import new_public_id

DEFAULT_EXPIRY_DAYS = 90


class ApiToken(models.Model):
    """A token that acts as its user through /api/v1/, within a scope.

    The scope narrows, never widens: every request still goes through the apps' access helpers
    as the user, so a user removed from a space takes their tokens' access there with them.
    A deploy key (`service` set) may only deploy its one service and read its status.
    """

    class Permission(models.TextChoices):
        READ = "read", "Read"
        DEPLOY = "deploy", "Deploy (everything a member may do)"

    public_id = models.CharField(max_length=12, unique=True, default=new_public_id, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=60)
    permission = models.CharField(max_length=10, choices=Permission.choices, default=Permission.READ)
    # All of the user's spaces, now and later; otherwise only those in `spaces`.
    all_spaces = models.BooleanField(default=False)
    spaces = models.ManyToManyField("spaces.Space", blank=True, related_name="+")
    service = models.ForeignKey(
        "services.Service", null=True, blank=True, on_delete=models.CASCADE, related_name="deploy_keys"
    )
    token_hash = models.CharField(max_length=64, unique=True)
    # The last four characters, so that a user can tell their tokens apart in the list.
    hint = models.CharField(max_length=4)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_deploy_key(self) -> bool:
        return self.service_id is not None

    @property
    def may_write(self) -> bool:
        return self.permission == self.Permission.DEPLOY

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.expires_at > timezone.now()


class IdempotentResponse(models.Model):
    """The answer to a creating POST sent with an `Idempotency-Key`, replayed for a retry."""

    token = models.ForeignKey(ApiToken, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    status = models.PositiveSmallIntegerField()
    body = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["token", "key"], name="idempotency_key_unique_per_token")]
