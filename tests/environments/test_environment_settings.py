from __future__ import annotations

import pytest
from django.urls import reverse

from environments.models import Environment
from spaces.models import AuditEntry, Project
from tests.factories import make_environment


@pytest.fixture
def staging(project, owner) -> Environment:
    return make_environment(project, by=owner, name="staging")


def _url(name: str, environment: Environment) -> str:
    return reverse(f"environments:{name}", args=[environment.public_id])


# Every settings action: its URL name, valid data, and bad data that must change nothing.
ACTIONS = {
    "rename": ({"name": "Pre-production"}, {"name": ""}),
    "project-update": ({"display_name": "Boutique"}, {"display_name": "x" * 101}),
    "set-default": ({}, None),
    "delete": ({"confirm_name": "staging"}, {"confirm_name": "Staging"}),
}


def _state(project: Project) -> tuple:
    project.refresh_from_db()
    return (
        project.display_name,
        project.default_environment_id,
        sorted(project.environments.filter(deleting_at__isnull=True).values_list("name", flat=True)),
    )


@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_rejects_wrong_method(owner_client, staging, action):
    assert owner_client.get(_url(action, staging)).status_code == 405


@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_hides_every_action_from_an_outsider(outsider_client, project, staging, action):
    before = _state(project)
    assert outsider_client.post(_url(action, staging), ACTIONS[action][0]).status_code == 404
    assert _state(project) == before


@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_sends_anonymous_to_login(client, project, staging, action):
    before = _state(project)
    response = client.post(_url(action, staging), ACTIONS[action][0])
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))
    assert _state(project) == before


@pytest.mark.parametrize("action", [name for name, (_, bad) in ACTIONS.items() if bad is not None])
def test_it_changes_nothing_on_bad_input(member_client, project, staging, action):
    before = _state(project)
    response = member_client.post(_url(action, staging), ACTIONS[action][1])
    assert response.status_code == 200
    assert 'class="error"' in response.content.decode()
    assert _state(project) == before


@pytest.mark.parametrize("action", [name for name, (_, bad) in ACTIONS.items() if bad is not None])
def test_it_returns_the_settings_tab_with_errors_to_htmx(member_client, project, staging, action, htmx_headers):
    response = member_client.post(_url(action, staging), ACTIONS[action][1], headers=htmx_headers)
    html = response.content.decode()
    assert "<html" not in html
    assert "Environment Information" in html and 'class="error"' in html


class TestRename:
    def test_it_renames_and_keeps_the_colour_and_id(self, member_client, staging):
        color, public_id = staging.color, staging.public_id
        response = member_client.post(_url("rename", staging), {"name": "Pré-production"})
        assert response.url == _url("settings", staging)
        staging.refresh_from_db()
        assert (staging.name, staging.color, staging.public_id) == ("Pré-production", color, public_id)

    def test_it_refuses_a_name_taken_in_the_project(self, owner_client, staging):
        response = owner_client.post(_url("rename", staging), {"name": "Main"})
        assert "already has an environment with this name" in response.content.decode()
        staging.refresh_from_db()
        assert staging.name == "staging"

    def test_it_allows_changing_only_the_case(self, owner_client, staging):
        owner_client.post(_url("rename", staging), {"name": "Staging"})
        staging.refresh_from_db()
        assert staging.name == "Staging"

    def test_it_updates_the_tab_and_the_header_for_htmx(self, owner_client, staging, htmx_headers):
        response = owner_client.post(_url("rename", staging), {"name": "qa"}, headers=htmx_headers)
        html = response.content.decode()
        assert 'id="env-header" class="env-header" hx-swap-oob="true"' in html
        # The selector in the new header still offers a working "Create new environment" form.
        assert 'id="env-create-form"' in html and 'name="cluster"' in html
        assert "Environment renamed." in html
        assert 'value="qa"' in html


class TestProjectDisplayName:
    def test_it_saves_a_display_name_in_any_language(self, member_client, project, staging):
        response = member_client.post(_url("project-update", staging), {"display_name": "Tienda · 商店"})
        assert response.url == _url("settings", staging)
        project.refresh_from_db()
        assert project.display_name == "Tienda · 商店"
        html = member_client.get(response.url).content.decode()
        assert "<h1>Tienda · 商店</h1>" in html
        assert "Display name saved." in html

    def test_it_requires_a_display_name(self, owner_client, project, staging):
        owner_client.post(_url("project-update", staging), {"display_name": "  "})
        project.refresh_from_db()
        assert project.display_name == "Shop"


class TestSetDefault:
    def test_it_sets_the_default_and_opening_the_project_loads_it(self, member_client, project, staging):
        response = member_client.post(_url("set-default", staging))
        assert response.url == _url("settings", staging)
        project.refresh_from_db()
        assert project.default_environment == staging
        opened = member_client.get(reverse("spaces:project-detail", args=[project.public_id]))
        assert opened.url == _url("detail", staging)

    def test_it_is_in_the_audit_log(self, member_client, owner_client, space, project, staging):
        member_client.post(_url("set-default", staging))
        entry = AuditEntry.objects.get(space=space, action="environment.default")
        assert (entry.actor_name, entry.environment_public_id, entry.project_name) == ("member", staging.public_id, "shop")
        html = owner_client.get(reverse("spaces:audit", args=[space.public_id])).content.decode()
        assert "Set staging as the default environment of shop" in html
        assert '<option value="environment.default">Default environment set</option>' in html

    def test_it_says_so_on_the_settings_tab(self, owner_client, staging, main_env):
        html = owner_client.get(_url("settings", staging)).content.decode()
        assert "Set as Default Environment" in html
        owner_client.post(_url("set-default", staging))
        html = owner_client.get(_url("settings", staging)).content.decode()
        assert "Set as Default Environment" not in html
        assert "This is the default environment" in html

    def test_it_answers_htmx_with_the_settings_tab(self, owner_client, staging, htmx_headers):
        response = owner_client.post(_url("set-default", staging), headers=htmx_headers)
        html = response.content.decode()
        assert "This is the default environment" in html
        assert "<html" not in html


class TestDelete:
    def test_it_reads_delete_environment_when_others_remain(self, owner_client, staging):
        html = owner_client.get(_url("settings", staging)).content.decode()
        assert ">Delete environment</button>" in html
        assert "Type staging to confirm" in html

    def test_it_reads_delete_project_for_the_only_environment(self, owner_client, main_env):
        html = owner_client.get(_url("settings", main_env)).content.decode()
        assert ">Delete project</button>" in html
        assert ">Delete environment</button>" not in html
        assert "Type shop to confirm" in html

    def test_it_deletes_the_environment_and_opens_the_project(self, member_client, project, staging, main_env):
        response = member_client.post(_url("delete", staging), {"confirm_name": "staging"})
        assert response.url == reverse("spaces:project-detail", args=[project.public_id])
        # The row stays while its namespace goes: the selector shows it greyed, not as a link.
        staging.refresh_from_db()
        assert staging.is_deleting
        assert member_client.get(response.url).url == _url("detail", main_env)
        page = member_client.get(_url("detail", main_env)).content.decode()
        assert "Deleting staging… its namespace is being removed." in page
        assert _url("detail", staging) not in page
        assert 'env-option-deleting' in page and "Deleting…" in page
        assert member_client.get(_url("detail", staging)).status_code == 404

    def test_it_moves_the_default_when_the_default_goes(self, owner_client, owner, project, staging, main_env):
        owner_client.post(_url("set-default", staging))
        owner_client.post(_url("delete", staging), {"confirm_name": "staging"})
        project.refresh_from_db()
        assert project.default_environment == main_env

    def test_it_falls_back_to_the_oldest_when_main_is_gone(self, owner_client, owner, project, staging, main_env):
        qa = make_environment(project, by=owner, name="qa")
        owner_client.post(_url("delete", main_env), {"confirm_name": "main"})
        project.refresh_from_db()
        assert project.default_environment == staging
        assert set(project.environments.filter(deleting_at__isnull=True)) == {staging, qa}

    def test_it_deletes_the_project_with_its_last_environment(self, owner_client, space, project, main_env):
        response = owner_client.post(_url("delete", main_env), {"confirm_name": "shop"})
        assert response.url == reverse("spaces:detail", args=[space.public_id])
        main_env.refresh_from_db()
        assert main_env.is_deleting
        # The rows go when the namespace has gone; until then the project is gone for users.
        space_page = owner_client.get(response.url).content.decode()
        assert "Deleting project shop… its namespace is being removed." in space_page
        assert "@team/shop" not in space_page
        assert "No projects yet" in space_page
        assert owner_client.get(reverse("spaces:project-detail", args=[project.public_id])).url == response.url
        assert owner_client.get(_url("settings", main_env)).status_code == 404

    def test_it_wants_the_project_name_not_the_environment_name_for_the_last_one(self, owner_client, project, main_env):
        response = owner_client.post(_url("delete", main_env), {"confirm_name": "main"})
        assert "Type shop exactly to confirm." in response.content.decode()
        assert Project.objects.filter(pk=project.pk).exists()

    def test_it_refuses_a_new_environment_with_the_name_of_one_being_deleted(self, owner_client, project, staging):
        owner_client.post(_url("delete", staging), {"confirm_name": "staging"})
        response = owner_client.post(
            reverse("environments:create", args=[project.public_id]), {"name": "staging", "cluster": staging.cluster_id}
        )
        assert "still being deleted" in response.content.decode()

    def test_it_redirects_htmx_on_the_client(self, owner_client, project, staging, htmx_headers):
        response = owner_client.post(_url("delete", staging), {"confirm_name": "staging"}, headers=htmx_headers)
        assert response["HX-Redirect"] == reverse("spaces:project-detail", args=[project.public_id])


# --- terminal access ------------------------------------------------------------------------------------


def test_an_owner_limits_the_terminal_to_owners(owner_client, main_env):
    url = _url("terminal-access", main_env)
    response = owner_client.post(url, {"terminal_access": "owners_only"})
    assert response.status_code == 302 and response["Location"].endswith("/settings/")
    main_env.refresh_from_db()
    assert main_env.terminal_access == "owners_only"
    settings_page = owner_client.get(response["Location"]).content.decode()
    assert 'value="owners_only" checked' in settings_page and "Terminal access: owners only." in settings_page


def test_a_member_cannot_change_it_and_sees_it_read_only(member_client, main_env):
    url = _url("terminal-access", main_env)
    assert member_client.post(url, {"terminal_access": "owners_only"}).status_code == 403
    main_env.refresh_from_db()
    assert main_env.terminal_access == "all_members"
    page = member_client.get(reverse("environments:settings", args=[main_env.public_id])).content.decode()
    assert "Only the space's owners can change this." in page


def test_bad_input_an_outsider_and_the_wrong_method(owner_client, outsider_client, main_env):
    url = _url("terminal-access", main_env)
    owner_client.post(url, {"terminal_access": "everyone"})
    main_env.refresh_from_db()
    assert main_env.terminal_access == "all_members"
    assert outsider_client.post(url, {"terminal_access": "owners_only"}).status_code == 404
    assert owner_client.get(url).status_code == 405


def test_an_owner_changing_who_may_open_a_terminal_is_audited(owner, owner_client, main_env):
    url = _url("terminal-access", main_env)
    owner_client.post(url, {"terminal_access": "owners_only"})
    entry = AuditEntry.objects.get(action=AuditEntry.Action.TERMINAL_ACCESS)
    assert entry.actor == owner and entry.environment_public_id == main_env.public_id
    assert entry.summary == f"Terminal access to {main_env.name}: owners only"
    assert entry.details == {"terminal_access": "owners_only", "previous": "all_members"}
    # Saving the same choice again changes nothing, so it adds no entry; bad input neither.
    owner_client.post(url, {"terminal_access": "owners_only"})
    owner_client.post(url, {"terminal_access": "everyone"})
    assert AuditEntry.objects.filter(action=AuditEntry.Action.TERMINAL_ACCESS).count() == 1
    page = owner_client.get(reverse("spaces:audit", args=[main_env.project.space.public_id])).content.decode()
    assert "Terminal access changed" in page and f"Terminal access to {main_env.name}: owners only" in page
