"""Git webhooks of a project, the deliveries they received and the preview environments they made."""

from __future__ import annotations

import secrets

from django.db import models

from spaces.ids import new_public_id


def new_hook_id() -> str:
    # Longer than other public ids: the URL is handed to a Git host and is all an outsider
    # needs to knock; the secret still guards the door.
    return new_public_id() + new_public_id()


def new_hook_secret() -> str:
    return secrets.token_urlsafe(32)


class ProjectHook(models.Model):
    """A project's webhook: its URL (`public_id`), its secret, and what pushes and pull
    requests may do. The secret and the Git host token are stored encrypted."""

    project = models.OneToOneField("spaces.Project", on_delete=models.CASCADE, related_name="hook")
    public_id = models.CharField(max_length=24, unique=True, default=new_hook_id, editable=False)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    rotated_at = models.DateTimeField(null=True, blank=True)

    previews_enabled = models.BooleanField(default=False)
    preview_base = models.ForeignKey(
        "environments.Environment", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The request's code runs in the preview and can read whatever it is given.
    previews_get_secrets = models.BooleanField(default=False)
    previews_allow_forks = models.BooleanField(default=False)

    # Commit statuses: a token of the Git host and its API's base URL (empty: guessed from the
    # repository's host, e.g. https://api.github.com).
    host_token_encrypted = models.TextField(blank=True)
    host_api_url = models.URLField(max_length=500, blank=True)

    def __str__(self) -> str:
        return f"hook of {self.project_id}"

    @property
    def secret(self) -> str:
        from environments.secrets import decrypt

        return decrypt(self.secret_encrypted)

    @property
    def host_token(self) -> str:
        from environments.secrets import decrypt

        return decrypt(self.host_token_encrypted) if self.host_token_encrypted else ""


class Delivery(models.Model):
    """One accepted delivery (signature checked). Its id is unique per hook: a replay of the
    same delivery finds the row and does nothing."""

    hook = models.ForeignKey(ProjectHook, on_delete=models.CASCADE, related_name="deliveries")
    delivery_id = models.CharField(max_length=200)
    provider = models.CharField(max_length=10)
    event = models.CharField(max_length=60)
    body = models.TextField()
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [models.UniqueConstraint(fields=["hook", "delivery_id"], name="delivery_id_unique_per_hook")]


class Preview(models.Model):
    """The environment `pr-<number>` of an open pull or merge request."""

    environment = models.OneToOneField("environments.Environment", on_delete=models.CASCADE, related_name="preview")
    hook = models.ForeignKey(ProjectHook, on_delete=models.CASCADE, related_name="previews")
    number = models.PositiveIntegerField()
    url = models.URLField(max_length=500)
    head_branch = models.CharField(max_length=200)
    head_sha = models.CharField(max_length=64, blank=True)
    repository_url = models.CharField(max_length=500)
    is_fork = models.BooleanField(default=False)
    last_push_at = models.DateTimeField()
    # Why it was created stopped (the allocation's refusal), shown on its page.
    start_refusal = models.TextField(blank=True)

    class Meta:
        ordering = ["number"]

    def __str__(self) -> str:
        return f"PR #{self.number}"


class CommitStatus(models.Model):
    """A build started by a push or a pull request, whose result goes back to the Git host
    as a commit status once it is known."""

    hook = models.ForeignKey(ProjectHook, on_delete=models.CASCADE, related_name="statuses")
    build = models.ForeignKey("services.Build", on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=10)
    repository_url = models.CharField(max_length=500)
    # GitLab addresses a project by id in its API; GitHub and Gitea by owner/name.
    repository_key = models.CharField(max_length=300)
    sha = models.CharField(max_length=64)
    target_url = models.CharField(max_length=500, blank=True)
    reported_state = models.CharField(max_length=20, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
