from __future__ import annotations

import pytest
from django.urls import reverse

from spaces.models import Membership, Project, Space
from tests.factories import local_cluster, make_project, make_user


def _url(space) -> str:
    return reverse("spaces:detail", args=[space.public_id])


def test_it_lists_the_projects_of_the_space_to_the_owner(owner_client, space, project):
    response = owner_client.get(_url(space))
    assert response.status_code == 200
    assert "Shop" in response.content.decode()
    assert "@team/shop" in response.content.decode()
    assert "1 environment" in response.content.decode()


def test_it_lists_the_projects_to_a_member(member_client, space, project):
    response = member_client.get(_url(space))
    assert response.status_code == 200
    assert "@team/shop" in response.content.decode()


def test_it_shows_an_empty_state_without_projects(owner_client, space):
    response = owner_client.get(_url(space))
    assert "No projects yet" in response.content.decode()


def test_it_hides_the_space_from_an_outsider(outsider_client, space):
    assert outsider_client.get(_url(space)).status_code == 404


def test_it_answers_404_for_a_space_that_does_not_exist(owner_client, db):
    assert owner_client.get(reverse("spaces:detail", args=["nosuchspace0"])).status_code == 404


def test_it_sends_anonymous_to_login_from_the_space(client, space):
    response = client.get(_url(space))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_rejects_wrong_method_on_the_space(owner_client, space):
    assert owner_client.post(_url(space)).status_code == 405


def test_it_keeps_the_query_count_flat_in_the_number_of_projects(owner_client, space, owner, django_assert_max_num_queries):
    make_project(space, by=owner, name="one")
    with django_assert_max_num_queries(12) as few:
        owner_client.get(_url(space))
    for index in range(5):
        make_project(space, by=owner, name=f"more{index}")
    with django_assert_max_num_queries(len(few.captured_queries)):
        owner_client.get(_url(space))


def test_it_lists_the_projects_in_the_sidebar_too(owner_client, space, project):
    html = owner_client.get(_url(space)).content.decode()
    # Once as a card, once in the sidebar.
    assert html.count(reverse("spaces:project-detail", args=[project.public_id])) == 2
    assert "No projects yet" not in html


def test_the_sidebar_names_whose_default_space_another_users_is(member_client, owner_client, owner, member, space, django_assert_max_num_queries):
    owners_default = Space.objects.get(owner=owner, is_default=True)
    Membership.objects.create(space=owners_default, user=member, role=Membership.Role.MEMBER)
    html = member_client.get(_url(space)).content.decode()
    assert f"{owners_default.name} <span class=\"muted\">· owner's default</span>" in html
    # Their own is simply the default.
    members_default = Space.objects.get(owner=member, is_default=True)
    assert f"{members_default.name} <span class=\"muted\">· default</span>" in html
    assert f"{owners_default.name} <span class=\"muted\">· default</span>" in owner_client.get(_url(space)).content.decode()
    # The owners' names come with the spaces: one more default space costs no query.
    with django_assert_max_num_queries(30) as before:
        member_client.get(_url(space))
    other = make_user("third")
    Membership.objects.create(space=Space.objects.get(owner=other, is_default=True), user=member, role=Membership.Role.MEMBER)
    with django_assert_max_num_queries(len(before.captured_queries)):
        assert "third's default" in member_client.get(_url(space)).content.decode()


def test_it_never_shows_integer_ids(owner_client, space, project, main_env):
    html = owner_client.get(_url(space)).content.decode()
    assert f"/projects/{project.public_id}/" in html
    assert f"/projects/{project.pk}/" not in html


class TestCreateProject:
    def url(self, space) -> str:
        return reverse("spaces:project-create", args=[space.public_id])

    def data(self, **overrides):
        data = {"name": "blog", "display_name": "Mon blog ✍️", "cluster": local_cluster().pk}
        data.update(overrides)
        return data

    def test_it_creates_a_project_and_lands_on_main(self, owner_client, space):
        response = owner_client.post(self.url(space), self.data())
        project = Project.objects.get(space=space, name="blog")
        main = project.environments.get()
        assert main.name == "main"
        assert project.display_name == "Mon blog ✍️"
        assert response.status_code == 302
        assert response.url == reverse("environments:detail", args=[main.public_id])

    def test_it_lets_a_member_create_a_project(self, member_client, member, space):
        member_client.post(self.url(space), self.data())
        assert Project.objects.get(space=space, name="blog").created_by == member

    def test_it_redirects_htmx_on_the_client(self, owner_client, space, htmx_headers):
        response = owner_client.post(self.url(space), self.data(), headers=htmx_headers)
        main = Project.objects.get(name="blog").environments.get()
        assert response.status_code == 200
        assert response["HX-Redirect"] == reverse("environments:detail", args=[main.public_id])

    @pytest.mark.parametrize("name", ["B", "Blog", "my-blog", "x" * 21])
    def test_it_rejects_bad_input(self, owner_client, space, name):
        response = owner_client.post(self.url(space), self.data(name=name))
        assert response.status_code == 200
        assert "name" in response.context["form"].errors
        assert not Project.objects.exists()

    def test_it_rejects_a_duplicate_name(self, owner_client, space, project):
        response = owner_client.post(self.url(space), self.data(name=project.name))
        assert "This space already has a project with this name." in response.content.decode()
        assert Project.objects.count() == 1

    def test_it_rejects_an_unknown_cluster(self, owner_client, space):
        response = owner_client.post(self.url(space), self.data(cluster="999999"))
        assert "cluster" in response.context["form"].errors
        assert not Project.objects.exists()

    def test_it_returns_the_form_partial_with_errors_to_htmx(self, owner_client, space, htmx_headers):
        response = owner_client.post(self.url(space), self.data(name="Bad Name"), headers=htmx_headers)
        html = response.content.decode()
        assert response.status_code == 200
        assert html.lstrip().startswith('<form id="project-form"')
        assert "<html" not in html
        assert "lowercase" in html

    def test_it_hides_the_space_from_an_outsider(self, outsider_client, space):
        assert outsider_client.post(self.url(space), self.data()).status_code == 404
        assert not Project.objects.exists()

    def test_it_sends_anonymous_to_login(self, client, space):
        response = client.post(self.url(space), self.data())
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))
        assert not Project.objects.exists()

    def test_it_rejects_wrong_method(self, owner_client, space):
        assert owner_client.get(self.url(space)).status_code == 405
