"""Creating a space: any signed-in user makes one, owns it and lands on it; a name is held to
the same rules as a rename."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from spaces.access import spaces_for_user
from spaces.actions import create_space
from spaces.models import AuditEntry, Membership, Space

pytestmark = pytest.mark.django_db

URL = reverse("spaces:create")


def test_it_shows_the_form(owner_client):
    response = owner_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    assert "New space" in html
    assert 'name="name"' in html


def test_it_links_to_the_form_from_the_space_list(owner_client, space):
    html = owner_client.get(reverse("spaces:detail", args=[space.public_id])).content.decode()
    assert f'href="{URL}"' in html


def test_it_creates_a_space_the_user_owns_and_lands_on_it(owner_client, owner):
    response = owner_client.post(URL, {"name": "acme.prod-2"})
    space = Space.objects.get(name="acme.prod-2")
    assert response.status_code == 302
    assert response.url == reverse("spaces:detail", args=[space.public_id])
    assert not space.is_default
    assert list(space.memberships.values_list("user__username", "role")) == [("owner", Membership.Role.OWNER)]
    page = owner_client.get(response.url)
    assert page.status_code == 200
    assert "acme.prod-2" in page.content.decode()


def test_it_redirects_an_htmx_request_on_the_client(owner_client, htmx_headers):
    response = owner_client.post(URL, {"name": "acme"}, headers=htmx_headers)
    space = Space.objects.get(name="acme")
    assert response.status_code == 200
    assert response["HX-Redirect"] == reverse("spaces:detail", args=[space.public_id])


def test_the_new_space_appears_in_the_users_space_list(owner_client, owner):
    owner_client.post(URL, {"name": "acme"})
    assert [s.name for s in spaces_for_user(owner)] == ["owner", "acme"]
    html = owner_client.get(reverse("home"), follow=True).content.decode()
    assert ">acme</a>" in html


def test_the_new_space_owner_reaches_its_settings_and_team(owner_client):
    owner_client.post(URL, {"name": "acme"})
    space = Space.objects.get(name="acme")
    assert owner_client.get(reverse("spaces:settings", args=[space.public_id])).status_code == 200
    assert owner_client.get(reverse("spaces:team", args=[space.public_id])).status_code == 200


def test_it_uses_the_default_allocation(owner_client):
    owner_client.post(URL, {"name": "acme"})
    space = Space.objects.get(name="acme")
    html = owner_client.get(reverse("spaces:settings", args=[space.public_id])).content.decode()
    assert "profile <strong>default</strong>" in html


def test_the_new_space_is_hidden_from_an_outsider(owner_client, outsider_client):
    owner_client.post(URL, {"name": "acme"})
    space = Space.objects.get(name="acme")
    assert outsider_client.get(reverse("spaces:detail", args=[space.public_id])).status_code == 404


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("abc", "Use 4–20 characters: lowercase letters, digits, hyphens and dots."),
        ("a" * 21, "Ensure this value has at most 20 characters"),
        ("Acme", "Use 4–20 characters: lowercase letters, digits, hyphens and dots."),
        ("acme_x", "Use 4–20 characters: lowercase letters, digits, hyphens and dots."),
        ("acme x", "Use 4–20 characters: lowercase letters, digits, hyphens and dots."),
        ("", "This field is required."),
    ],
)
def test_it_refuses_a_bad_name(owner_client, owner, name, message):
    before = Space.objects.count()
    response = owner_client.post(URL, {"name": name})
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Space.objects.count() == before
    assert Membership.objects.filter(user=owner).count() == 1


def test_it_refuses_the_name_of_an_existing_space(owner_client, space):
    before = Space.objects.count()
    response = owner_client.post(URL, {"name": "team"})
    assert response.status_code == 200
    assert "Another space has this name." in response.content.decode()
    assert Space.objects.count() == before


def test_it_refuses_a_bad_name_in_the_htmx_fragment(owner_client, htmx_headers):
    response = owner_client.post(URL, {"name": "ab"}, headers=htmx_headers)
    assert response.status_code == 200
    html = response.content.decode()
    assert html.lstrip().startswith('<form id="space-form"')
    assert "Use 4–20 characters" in html
    assert not Space.objects.filter(name="ab").exists()


def test_it_sends_anonymous_to_login(client):
    for response in (client.get(URL), client.post(URL, {"name": "acme"})):
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))
    assert not Space.objects.filter(name="acme").exists()


def test_it_refuses_other_methods(owner_client):
    assert owner_client.put(URL).status_code == 405


def test_it_records_the_creation_in_the_new_spaces_audit_log(owner_client, owner):
    owner_client.post(URL, {"name": "acme"})
    space = Space.objects.get(name="acme")
    entry = AuditEntry.objects.get(space=space)
    assert (entry.action, entry.actor, entry.summary) == ("space.create", owner, "Created the space acme")
    html = owner_client.get(reverse("spaces:audit", args=[space.public_id])).content.decode()
    assert "Created the space acme" in html


def test_the_action_refuses_a_taken_or_bad_name_whoever_calls_it(owner, space):
    for name in ("team", "no"):
        with pytest.raises(ValidationError):
            create_space(acting_user=owner, name=name)
    assert not AuditEntry.objects.filter(action="space.create").exists()
    assert Membership.objects.filter(user=owner).count() == 2
