from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.auth.models import AbstractBaseUser

from api.models import DEFAULT_EXPIRY_DAYS, ApiToken
from spaces.access import spaces_for_user

MAX_EXPIRY_DAYS = 366


class TokenForm(forms.Form):
    name = forms.CharField(label="Name", max_length=60, help_text="What uses it, like “GitHub Actions for shop”.")
    permission = forms.ChoiceField(
        label="Permission", choices=ApiToken.Permission.choices, initial=ApiToken.Permission.READ,
        widget=forms.RadioSelect,
    )
    all_spaces = forms.BooleanField(label="All my spaces, including those I join later", required=False, initial=True)
    spaces = forms.ModelMultipleChoiceField(
        label="Or only these spaces", queryset=None, required=False, widget=forms.CheckboxSelectMultiple,
        to_field_name="public_id",
    )
    expires_in_days = forms.IntegerField(
        label="Expires in (days)", min_value=1, max_value=MAX_EXPIRY_DAYS, initial=DEFAULT_EXPIRY_DAYS
    )

    def __init__(self, *args: Any, user: AbstractBaseUser, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["spaces"].queryset = spaces_for_user(user)

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the token a name.")
        return name

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not data.get("all_spaces") and not data.get("spaces"):
            self.add_error("spaces", "Choose at least one space, or all of them.")
        return data


class DeployKeyForm(forms.Form):
    name = forms.CharField(label="Name", max_length=60, help_text="What uses it, like “CI of the api repository”.")
    expires_in_days = forms.IntegerField(
        label="Expires in (days)", min_value=1, max_value=MAX_EXPIRY_DAYS, initial=DEFAULT_EXPIRY_DAYS
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise forms.ValidationError("Give the deploy key a name.")
        return name
