from __future__ import annotations

from django.urls import reverse

from environments.actions import set_default_environment
from tests.factories import make_environment


def _env_url(environment) -> str:
    return reverse("environments:detail", args=[environment.public_id])


class TestProjectDetail:
    def url(self, project) -> str:
        return reverse("spaces:project-detail", args=[project.public_id])

    def test_it_opens_main_by_default(self, owner_client, project, main_env):
        response = owner_client.get(self.url(project))
        assert response.status_code == 302
        assert response.url == _env_url(main_env)

    def test_it_opens_the_default_environment(self, member_client, project, owner):
        staging = make_environment(project, by=owner, name="staging")
        set_default_environment(acting_user=owner, environment=staging)
        response = member_client.get(self.url(project))
        assert response.url == _env_url(staging)

    def test_it_falls_back_to_the_first_environment_without_a_default(self, owner_client, project, owner, main_env):
        project.default_environment = None
        project.save()
        assert owner_client.get(self.url(project)).url == _env_url(main_env)

    def test_it_hides_the_project_from_an_outsider(self, outsider_client, project):
        assert outsider_client.get(self.url(project)).status_code == 404

    def test_it_answers_404_for_an_unknown_project(self, owner_client, db):
        assert owner_client.get(reverse("spaces:project-detail", args=["000000000000"])).status_code == 404

    def test_it_sends_anonymous_to_login(self, client, project):
        assert client.get(self.url(project)).url.startswith(reverse("login"))

    def test_it_rejects_wrong_method(self, owner_client, project):
        assert owner_client.post(self.url(project)).status_code == 405


class TestProjectAlias:
    def test_it_redirects_the_readable_handle(self, member_client, project):
        response = member_client.get(f"/@team/{project.name}/")
        assert response.status_code == 302
        assert response.url == reverse("spaces:project-detail", args=[project.public_id])

    def test_it_answers_404_for_an_unknown_handle(self, owner_client, project):
        assert owner_client.get("/@team/nosuch/").status_code == 404
        assert owner_client.get(f"/@nosuchspace/{project.name}/").status_code == 404

    def test_it_hides_the_handle_from_an_outsider(self, outsider_client, project):
        assert outsider_client.get(f"/@team/{project.name}/").status_code == 404

    def test_it_sends_anonymous_to_login(self, client, project):
        assert client.get(f"/@team/{project.name}/").url.startswith(reverse("login"))

    def test_it_rejects_wrong_method(self, owner_client, project):
        assert owner_client.post(f"/@team/{project.name}/").status_code == 405
