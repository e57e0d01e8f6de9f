from __future__ import annotations

from django import forms

from clusters.models import Cluster
from environments.models import Environment
from spaces.models import Project


class _EnvironmentNameMixin:
    project: Project
    exclude_pk: int | None = None

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]  # type: ignore[attr-defined]
        taken = Environment.objects.filter(project=self.project, name__iexact=name)
        if self.exclude_pk is not None:
            taken = taken.exclude(pk=self.exclude_pk)
        existing = taken.first()
        if existing is not None and existing.deleting_at is not None:
            raise forms.ValidationError("An environment with this name is still being deleted; try again in a minute.")
        if existing is not None:
            raise forms.ValidationError("This project already has an environment with this name.")
        return name


class EnvironmentCreateForm(_EnvironmentNameMixin, forms.Form):
    name = forms.CharField(label="Environment Name", max_length=40, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    cluster = forms.ModelChoiceField(label="Cluster", queryset=Cluster.objects.only("pk", "name", "display_name"), empty_label=None)

    def __init__(self, *args, project: Project, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.project = project


class EnvironmentRenameForm(_EnvironmentNameMixin, forms.Form):
    name = forms.CharField(label="Environment Name", max_length=40, widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        kwargs.setdefault("initial", {"name": environment.name})
        super().__init__(*args, **kwargs)
        self.project = environment.project
        self.exclude_pk = environment.pk


class DeleteConfirmForm(forms.Form):
    """Deletion is confirmed by typing the name of what goes away."""

    confirm_name = forms.CharField(label="Name", max_length=100, widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def __init__(self, *args, expected: str, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected
        self.fields["confirm_name"].label = f"Type {expected} to confirm"

    def clean_confirm_name(self) -> str:
        value = self.cleaned_data["confirm_name"]
        if value != self.expected:
            raise forms.ValidationError(f"Type {self.expected} exactly to confirm.")
        return value
