from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm

from clusters.models import Cluster
from spaces.models import Membership, Project, Space, validate_project_name, validate_space_name


class SignupForm(UserCreationForm):
    email = forms.EmailField(label="E-mail", help_text="For invitations and notices.")

    class Meta(UserCreationForm.Meta):
        fields = ("username", "email")


class LoginForm(AuthenticationForm):
    """Django's login form; a class of its own so the templates can rely on its fields."""


class ProjectCreateForm(forms.Form):
    name = forms.CharField(
        label="Project Name",
        max_length=20,
        validators=[validate_project_name],
        help_text="2–20 lowercase English letters and digits; unique in the space.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "pattern": "[a-z0-9]{2,20}", "spellcheck": "false"}),
    )
    display_name = forms.CharField(
        label="Display Name",
        max_length=100,
        required=False,
        help_text="Any characters and languages. Defaults to the project name.",
    )
    cluster = forms.ModelChoiceField(
        label="Cluster", queryset=Cluster.objects.only("pk", "name", "display_name"), empty_label=None, help_text="Where its main environment runs."
    )

    def __init__(self, *args, space: Space, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.space = space
        self.fields["cluster"].initial = Cluster.default()

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        if Project.objects.filter(space=self.space, name=name).exists():
            raise forms.ValidationError("This space already has a project with this name.")
        return name


class ProjectDisplayNameForm(forms.Form):
    display_name = forms.CharField(
        label="Display Name", max_length=100, help_text="Any characters and languages."
    )


class SpaceNameForm(forms.Form):
    """A space's name, held to the same rules when it is chosen and when it is changed."""

    name = forms.CharField(
        label="Space name",
        max_length=20,
        validators=[validate_space_name],
        help_text="4–20 characters: lowercase letters, digits, hyphens and dots.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "pattern": "[a-z0-9.\\-]{4,20}", "spellcheck": "false"}),
    )
    # The space being renamed, which may keep its own name; None for a new space.
    space: Space | None = None

    def clean_name(self) -> str:
        name = self.cleaned_data["name"]
        others = Space.objects.filter(name=name)
        if self.space is not None:
            others = others.exclude(pk=self.space.pk)
        if others.exists():
            raise forms.ValidationError("Another space has this name.")
        return name


class SpaceCreateForm(SpaceNameForm):
    """The name of a new space: unique among all spaces."""


class SpaceRenameForm(SpaceNameForm):
    def __init__(self, *args, space: Space, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.space = space


class SpaceDeleteForm(forms.Form):
    """Deleting a space takes typing its name: everything in it goes, namespaces included."""

    confirm = forms.CharField(label="Type the space's name to confirm", max_length=20)

    def __init__(self, *args, space: Space, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.space = space

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"].strip()
        if value != self.space.name:
            raise forms.ValidationError(f"Type {self.space.name} to confirm.")
        return value


class InviteForm(forms.Form):
    who = forms.CharField(
        label="E-mail or username",
        max_length=254,
        help_text="Someone with an account joins at once; anyone else gets a link to sign up.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    role = forms.ChoiceField(label="Role", choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)
