from __future__ import annotations

import pytest
from django.urls import reverse

from environments.models import Environment
from tests.factories import local_cluster, make_cluster, make_environment


def _url(project) -> str:
    return reverse("environments:create", args=[project.public_id])


def _data(**overrides):
    data = {"name": "staging", "cluster": local_cluster().pk}
    data.update(overrides)
    return data


def test_it_creates_an_environment_and_lands_on_it(owner_client, project, owner):
    response = owner_client.post(_url(project), _data())
    staging = project.environments.get(name="staging")
    assert response.status_code == 302
    assert response.url == reverse("environments:detail", args=[staging.public_id])
    assert staging.cluster == local_cluster()
    assert staging.created_by == owner
    assert staging.color


def test_it_lets_a_member_create_on_another_cluster(member_client, project):
    other = make_cluster("eu-west")
    member_client.post(_url(project), _data(name="Production 🇪🇺", cluster=other.pk))
    assert project.environments.get(name="Production 🇪🇺").cluster == other


def test_it_redirects_htmx_on_the_client(owner_client, project, htmx_headers):
    response = owner_client.post(_url(project), _data(), headers=htmx_headers)
    staging = project.environments.get(name="staging")
    assert response["HX-Redirect"] == reverse("environments:detail", args=[staging.public_id])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": ""}, "This field is required."),
        ({"name": "   "}, "This field is required."),
        ({"name": "x" * 41}, "at most 40 characters"),
        ({"name": "MAIN"}, "already has an environment with this name"),
        ({"cluster": "424242"}, "Select a valid choice"),
    ],
)
def test_it_rejects_bad_input(owner_client, project, main_env, overrides, message):
    response = owner_client.post(_url(project), _data(**overrides) | {"from": main_env.public_id})
    html = response.content.decode()
    assert response.status_code == 200
    assert message in html
    # Without JavaScript the whole page comes back with the selector and its form open.
    assert "<html" in html
    assert 'data-env-selector open' in html
    assert list(project.environments.values_list("name", flat=True)) == ["main"]


def test_it_rejects_a_name_taken_in_another_case(owner_client, project, owner):
    make_environment(project, by=owner, name="Staging")
    owner_client.post(_url(project), _data(name="staging"))
    assert project.environments.filter(name__iexact="staging").count() == 1


def test_it_returns_the_form_with_errors_to_htmx(owner_client, project, htmx_headers):
    response = owner_client.post(_url(project), _data(name="main"), headers=htmx_headers)
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="env-create-form"')
    assert "already has an environment with this name" in html
    assert project.environments.count() == 1


def test_it_hides_the_project_from_an_outsider(outsider_client, project):
    assert outsider_client.post(_url(project), _data()).status_code == 404
    assert project.environments.count() == 1


def test_it_sends_anonymous_to_login(client, project):
    response = client.post(_url(project), _data())
    assert response.url.startswith(reverse("login"))
    assert project.environments.count() == 1


def test_it_rejects_wrong_method(owner_client, project):
    assert owner_client.get(_url(project)).status_code == 405


def test_it_enforces_case_insensitive_names_in_the_database(project, owner):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        Environment.objects.create(project=project, name="MAIN", cluster=local_cluster())
