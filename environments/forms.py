from __future__ import annotations

import ipaddress
import re

from django import forms

from clusters.models import Cluster
from environments.models import Environment
from spaces.models import Project


def validate_cidrs(values: list[str]) -> list[str]:
    """CIDRs (IPv4 or IPv6) normalised (`10.0.0.1/8` → `10.0.0.0/8`); ValueError naming the bad one."""
    result: list[str] = []
    for value in values:
        try:
            network = ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ValueError(f"“{value}” is not an IP address range like 203.0.113.0/24 or 2001:db8::/32.") from None
        if str(network) not in result:
            result.append(str(network))
    return result


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


class _OptionRequiredSelect(forms.Select):
    """A select without an empty option always submits a value, so `required` adds nothing;
    Django's check for it reads the first choice, which for a model field is a second query
    of the clusters on every page with the selector."""

    def use_required_attribute(self, initial: object) -> bool:
        return False


class EnvironmentCreateForm(_EnvironmentNameMixin, forms.Form):
    EMPTY, CLONE = "empty", "clone"

    mode = forms.ChoiceField(
        label="How",
        choices=[(EMPTY, "Create as Empty Environment"), (CLONE, "Add by Cloning")],
        initial=EMPTY,
        required=False,
        widget=forms.RadioSelect,
    )
    source = forms.ModelChoiceField(
        label="Source environment",
        queryset=Environment.objects.none(),
        to_field_name="public_id",
        required=False,
        empty_label="Choose an environment",
        help_text="Its services are copied, stopped; variables and secrets are not.",
    )
    name = forms.CharField(label="Environment Name", max_length=40, widget=forms.TextInput(attrs={"autocomplete": "off"}))
    cluster = forms.ModelChoiceField(
        label="Cluster",
        queryset=Cluster.objects.only("pk", "name", "display_name"),
        empty_label=None,
        widget=_OptionRequiredSelect,
    )

    def __init__(self, *args, project: Project, **kwargs) -> None:
        # The selector holds this form on every tab, the Settings tab its rename form: ids of
        # their own keep "Environment Name" on the right field.
        kwargs.setdefault("auto_id", "env-create-%s")
        super().__init__(*args, **kwargs)
        self.project = project
        self.fields["source"].queryset = Environment.objects.filter(project=project, deleting_at__isnull=True)

    def clean(self):
        data = super().clean()
        if data.get("mode") == self.CLONE and not data.get("source"):
            self.add_error("source", "Choose the environment to clone.")
        if data.get("mode") != self.CLONE:
            data["source"] = None
        return data


class EnvironmentRenameForm(_EnvironmentNameMixin, forms.Form):
    name = forms.CharField(label="Environment Name", max_length=40, widget=forms.TextInput(attrs={"autocomplete": "off"}))

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        kwargs.setdefault("initial", {"name": environment.name})
        kwargs.setdefault("auto_id", "env-rename-%s")
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


class VariableForm(forms.Form):
    """One environment variable or secret, added or replaced (a secret's value is never shown)."""

    key = forms.RegexField(
        label="Key",
        max_length=253,
        regex=r"^[A-Za-z_][A-Za-z0-9_]*$",
        error_messages={"invalid": "Use letters, digits and underscores, not starting with a digit."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": "DATABASE_URL"}),
    )
    value = forms.CharField(
        label="Value",
        required=False,
        max_length=64 * 1024,
        strip=False,
        # A browser must not offer to remember a secret, nor show it back after an error.
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )
    is_secret = forms.BooleanField(
        label="Secret (write-only: masked once saved)", required=False, initial=True
    )


class FirewallForm(forms.Form):
    allow_external_tcp = forms.BooleanField(label="Allow external TCP connections", required=False)
    allow_cidrs = forms.CharField(
        label="Only from these IP ranges (optional)",
        required=False,
        max_length=8000,
        widget=forms.Textarea(attrs={"rows": 2, "spellcheck": "false", "placeholder": "203.0.113.0/24, 2001:db8::/32"}),
        help_text="CIDRs separated by commas, spaces or new lines. Empty: all IP addresses.",
    )
    confirm = forms.BooleanField(
        label="I understand that this opens the environment's TCP services to all IP addresses (or the ranges above).",
        required=False,
    )

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        kwargs.setdefault(
            "initial",
            {
                "allow_external_tcp": environment.allow_external_tcp,
                "allow_cidrs": "\n".join(environment.external_allow_cidrs),
            },
        )
        super().__init__(*args, **kwargs)
        self.environment = environment

    def clean_allow_cidrs(self) -> list[str]:
        items = [item for item in re.split(r"[\s,]+", self.cleaned_data["allow_cidrs"].strip()) if item]
        try:
            return validate_cidrs(items)
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        if data.get("allow_external_tcp") and not self.environment.allow_external_tcp and not data.get("confirm"):
            self.add_error(
                "confirm",
                "Allowing external TCP connections opens this environment to all IP addresses: tick the box to confirm.",
            )
        return data


class TerminalAccessForm(forms.Form):
    terminal_access = forms.ChoiceField(choices=Environment.TerminalAccess.choices)
