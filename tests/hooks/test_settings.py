"""The webhook section of the Settings tab: who sees the secret, who changes what."""

from __future__ import annotations

import pytest
from django.urls import reverse

from hooks import actions
from hooks.models import ProjectHook
from spaces.models import AuditEntry
from tests.factories import make_environment


def settings_page(client, environment) -> str:
    """The Settings tab's webhook section, as htmx loads it into the tab."""
    tab = client.get(reverse("environments:settings", args=[environment.public_id])).content.decode()
    url = reverse("hooks:section", args=[environment.public_id])
    assert f'hx-get="{url}"' in tab and f'href="{url}"' in tab
    response = client.get(url, headers={"HX-Request": "true"})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_the_section_is_a_page_of_its_own_without_javascript_and_hidden_from_outsiders(owner_client, outsider_client, main_env):
    url = reverse("hooks:section", args=[main_env.public_id])
    page = owner_client.get(url).content.decode()
    assert "<html" in page and "Git Webhook" in page
    assert outsider_client.get(url).status_code == 404
    assert owner_client.post(url).status_code == 405


@pytest.mark.django_db
def test_the_owner_creates_the_hook_and_sees_url_secret_and_setup(owner_client, member_client, main_env):
    page = settings_page(owner_client, main_env)
    assert "Create webhook" in page
    response = owner_client.post(reverse("hooks:rotate", args=[main_env.public_id]))
    assert response.status_code == 302
    hook = ProjectHook.objects.get(project=main_env.project)
    page = settings_page(owner_client, main_env)
    assert f"/hooks/{hook.public_id}/" in page
    assert hook.secret in page
    for host in ("GitHub", "GitLab", "Gitea / Forgejo", "Secret token"):
        assert host in page
    # A member sees that the hook exists, never its secret, and no owner controls.
    page = settings_page(member_client, main_env)
    assert f"/hooks/{hook.public_id}/" in page
    assert hook.secret not in page
    assert "only the space's owners see it" in page
    assert "Rotate secret" not in page and "Save previews" not in page


@pytest.mark.django_db
def test_rotating_changes_the_secret_and_is_audited(owner_client, main_env, owner):
    hook = actions.ensure_hook(main_env.project)
    old = hook.secret
    assert owner_client.post(reverse("hooks:rotate", args=[main_env.public_id])).status_code == 302
    hook.refresh_from_db()
    assert hook.secret != old and hook.rotated_at is not None
    assert AuditEntry.objects.filter(action="hook.settings", summary="Rotated the webhook secret", actor=owner).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["rotate", "previews", "host-token"])
def test_members_are_refused_outsiders_get_404_and_get_is_not_allowed(name, member_client, outsider_client, owner_client, main_env):
    url = reverse(f"hooks:{name}", args=[main_env.public_id])
    assert member_client.post(url, {"enabled": "on", "base": main_env.public_id, "token": "t"}).status_code == 403
    assert outsider_client.post(url).status_code == 404
    assert owner_client.get(url).status_code == 405
    assert not ProjectHook.objects.exists()


@pytest.mark.django_db
def test_the_owner_turns_previews_on_with_a_base(owner_client, main_env, project, owner):
    staging = make_environment(project, by=owner, name="staging")
    url = reverse("hooks:previews", args=[main_env.public_id])
    response = owner_client.post(url, {"enabled": "on"}, follow=True)
    assert "Pick the environment previews are cloned from." in response.content.decode()
    assert not ProjectHook.objects.filter(previews_enabled=True).exists()

    response = owner_client.post(url, {"enabled": "on", "base": staging.public_id, "with_secrets": "on"}, follow=True)
    assert "Preview settings saved." in response.content.decode()
    hook = ProjectHook.objects.get()
    assert hook.previews_enabled and hook.preview_base == staging and hook.previews_get_secrets
    assert not hook.previews_allow_forks
    page = settings_page(owner_client, main_env)
    assert "can read every secret it is given" in page
    assert f'<option value="{staging.public_id}" selected>staging</option>' in page


@pytest.mark.django_db
def test_a_base_from_another_project_is_refused(owner_client, main_env, space, owner):
    from tests.factories import make_project

    other = make_project(space, by=owner, name="other").environments.get()
    response = owner_client.post(
        reverse("hooks:previews", args=[main_env.public_id]), {"enabled": "on", "base": other.public_id}, follow=True
    )
    assert "Select a valid choice" in response.content.decode()
    assert not ProjectHook.objects.filter(previews_enabled=True).exists()


@pytest.mark.django_db
def test_the_host_token_is_stored_encrypted_and_never_shown(owner_client, main_env):
    url = reverse("hooks:host-token", args=[main_env.public_id])
    response = owner_client.post(url, {"token": "ghp_abc123", "api_url": ""}, follow=True)
    assert "Git host token saved." in response.content.decode()
    hook = ProjectHook.objects.get()
    assert hook.host_token == "ghp_abc123" and "ghp_abc123" not in hook.host_token_encrypted
    assert "ghp_abc123" not in response.content.decode()
    response = owner_client.post(url, {"token": "two words", "api_url": ""}, follow=True)
    assert "A token has no spaces or line breaks." in response.content.decode()
    hook.refresh_from_db()
    assert hook.host_token == "ghp_abc123"
