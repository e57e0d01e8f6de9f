from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from spaces.forms import ProjectCreateForm
from spaces.models import Project
from tests.factories import local_cluster, make_project, make_space, make_user


def _form(space, name: str, display_name: str = "") -> ProjectCreateForm:
    return ProjectCreateForm({"name": name, "display_name": display_name, "cluster": local_cluster().pk}, space=space)


@pytest.mark.parametrize("name", ["ab", "shop", "a1", "web2024", "abcdefghij0123456789"])
def test_it_accepts_valid_project_names(space, name):
    form = _form(space, name)
    assert form.is_valid(), form.errors


@pytest.mark.parametrize(
    "name",
    ["a", "abcdefghij01234567890", "Shop", "my-shop", "my_shop", "my shop", "café", "ｓｈｏｐ", "shop!", ""],
)
def test_it_rejects_invalid_project_names(space, name):
    form = _form(space, name)
    assert not form.is_valid()
    assert "name" in form.errors


def test_it_rejects_a_duplicate_name_in_the_same_space(space, project):
    form = _form(space, project.name)
    assert not form.is_valid()
    assert form.errors["name"] == ["This space already has a project with this name."]


def test_it_allows_the_same_name_in_another_space(project, owner):
    other = make_space(owner=owner, name="other")
    form = _form(other, project.name)
    assert form.is_valid(), form.errors


def test_it_enforces_the_unique_name_in_the_database(space, project, owner):
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.create(space=space, name=project.name, display_name="again")


def test_it_validates_the_name_on_the_model(space):
    project = Project(space=space, name="Not-Valid", display_name="x")
    with pytest.raises(ValidationError) as excinfo:
        project.full_clean()
    assert "name" in excinfo.value.message_dict


@pytest.mark.parametrize("display_name", ["Boutique en ligne — été", "온라인 상점", "网上商店", "Магазин 🛒", "متجر"])
def test_it_keeps_display_names_in_any_language(space, owner, display_name):
    form = _form(space, "shop", display_name)
    assert form.is_valid(), form.errors
    project = make_project(space, by=owner, name="shop", display_name=form.cleaned_data["display_name"])
    project.refresh_from_db()
    assert project.display_name == display_name


def test_it_rejects_a_display_name_over_100_characters(space):
    form = _form(space, "shop", "x" * 101)
    assert not form.is_valid()
    assert "display_name" in form.errors


def test_it_defaults_the_display_name_to_the_name(space, owner):
    project = make_project(space, by=owner, name="blog")
    assert project.display_name == "blog"


def test_it_creates_main_with_the_project_as_its_default(space, owner):
    project = make_project(space, by=owner, name="blog")
    assert [env.name for env in project.environments.all()] == ["main"]
    main = project.environments.get()
    assert project.default_environment == main
    assert main.color == ""
    assert main.cluster == local_cluster()
    assert main.created_by == owner


def test_it_gives_every_object_a_public_id_of_twelve_lowercase_characters(project, main_env):
    for public_id in (project.space.public_id, project.public_id, main_env.public_id):
        assert len(public_id) == 12
        assert public_id.isalnum() and public_id == public_id.lower()
    assert main_env.namespace == f"ale-{main_env.public_id}"


def test_it_refuses_to_delete_a_default_space(db):
    user = make_user("keeper")
    space = user.memberships.get().space
    assert space.is_default
    with pytest.raises(ValidationError):
        space.delete()
    space.refresh_from_db()
