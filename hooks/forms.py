from __future__ import annotations

from typing import Any

from django import forms

from environments.models import Environment
from hooks.models import ProjectHook


class PreviewSettingsForm(forms.Form):
    enabled = forms.BooleanField(label="Create a preview environment for each pull or merge request", required=False)
    base = forms.ModelChoiceField(
        label="Cloned from", queryset=Environment.objects.none(), required=False, to_field_name="public_id",
        empty_label="Pick an environment",
    )  # fmt: skip
    with_secrets = forms.BooleanField(label="Previews receive the base environment's secrets", required=False)
    allow_forks = forms.BooleanField(label="Build requests from forks", required=False)

    def __init__(self, *args: Any, hook: ProjectHook | None, project: Any, **kwargs: Any) -> None:
        if hook is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "enabled": hook.previews_enabled,
                "base": hook.preview_base.public_id if hook.preview_base else None,
                "with_secrets": hook.previews_get_secrets,
                "allow_forks": hook.previews_allow_forks,
            }
        super().__init__(*args, **kwargs)
        self.fields["base"].queryset = Environment.objects.filter(
            project=project, deleting_at__isnull=True, preview__isnull=True
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("enabled") and not data.get("base"):
            self.add_error("base", "Pick the environment previews are cloned from.")
        return data


class HostTokenForm(forms.Form):
    token = forms.CharField(
        label="Git host token", required=False, max_length=500,
        widget=forms.PasswordInput(attrs={"autocomplete": "off"}),
        help_text="A token allowed to set commit statuses (GitHub: repo:status; GitLab: api; Gitea: write:repository). Leave empty to remove it.",
    )  # fmt: skip
    api_url = forms.URLField(
        label="API URL", required=False, max_length=500, assume_scheme="https",
        help_text="Empty for github.com, gitlab.com or the repository's own host (https://<host>/api/v4 for GitLab, /api/v1 for Gitea).",
    )  # fmt: skip

    def clean_token(self) -> str:
        token = self.cleaned_data["token"].strip()
        if any(c.isspace() or not c.isprintable() for c in token):
            raise forms.ValidationError("A token has no spaces or line breaks.")
        return token
