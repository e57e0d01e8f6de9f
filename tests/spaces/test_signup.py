from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from spaces.actions import ensure_default_space, sign_up
from spaces.models import Membership, Space
from tests.factories import PASSWORD, make_user

User = get_user_model()


def _signup_data(username: str = "newcomer", **overrides: str) -> dict[str, str]:
    data = {"username": username, "email": f"{username}@example.com", "password1": PASSWORD, "password2": PASSWORD}
    data.update(overrides)
    return data


def test_it_shows_the_signup_form(client, db):
    response = client.get(reverse("signup"))
    assert response.status_code == 200
    assert b"Create your account" in response.content


def test_it_signs_up_logs_in_and_lands_on_the_default_space(client, db):
    response = client.post(reverse("signup"), _signup_data(), follow=True)
    user = User.objects.get(username="newcomer")
    space = Space.objects.get(owner=user, is_default=True)
    assert response.redirect_chain[-1][0] == reverse("spaces:detail", args=[space.public_id])
    assert response.context["user"] == user
    assert space.name == "newcomer"
    assert Membership.objects.get(space=space, user=user).role == "owner"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password2": "something else entirely"}, "password2"),
        ({"email": "not-an-e-mail"}, "email"),
        ({"email": ""}, "email"),
        ({"username": ""}, "username"),
    ],
)
def test_it_rejects_bad_signup_input(client, db, overrides, field):
    response = client.post(reverse("signup"), _signup_data(**overrides))
    assert response.status_code == 200
    assert field in response.context["form"].errors
    assert not User.objects.exists()
    assert not Space.objects.exists()


def test_it_rejects_a_taken_username(client, db):
    make_user("newcomer")
    response = client.post(reverse("signup"), _signup_data())
    assert "username" in response.context["form"].errors
    assert User.objects.filter(username="newcomer").count() == 1


def test_it_rejects_wrong_method_on_signup(client, db):
    assert client.put(reverse("signup")).status_code == 405


def test_it_sends_a_signed_in_user_home_from_signup(owner_client):
    response = owner_client.get(reverse("signup"))
    assert response.status_code == 302
    assert response.url == reverse("home")


@pytest.mark.parametrize(
    ("username", "expected"),
    [("alice", "alice"), ("Bo", "bo-space"), ("jean.luc_picard", "jean.luc-picard"), ("x" * 40, "x" * 20), ("a@b.c", "a-b.c")],
)
def test_it_derives_a_valid_default_space_name(db, username, expected):
    user = sign_up(username=username, email="someone@example.com", password=PASSWORD)
    space = Space.objects.get(owner=user)
    assert space.name == expected
    space.full_clean()


def test_it_makes_the_default_space_name_unique(db):
    Space.objects.create(name="alice")
    user = sign_up(username="alice", email="alice@example.com", password=PASSWORD)
    assert Space.objects.get(owner=user).name == "alice-2"


def test_it_creates_one_default_space_however_often_asked(db):
    user = make_user("twice")
    assert ensure_default_space(user) == ensure_default_space(user)
    assert Space.objects.filter(owner=user, is_default=True).count() == 1


def test_it_signs_in_with_the_login_form(client, db):
    make_user("alice")
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.context["user"].username == "alice"
    assert response.redirect_chain[-1][0].startswith("/spaces/")


def test_it_rejects_a_wrong_password(client, db):
    make_user("alice")
    response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert "_auth_user_id" not in client.session


def test_it_signs_out_with_a_post(owner_client):
    assert owner_client.get(reverse("logout")).status_code == 405
    response = owner_client.post(reverse("logout"))
    assert response.status_code == 302
    assert "_auth_user_id" not in owner_client.session


def test_it_sends_home_to_the_default_space(owner_client, owner):
    response = owner_client.get(reverse("home"))
    assert response.url == reverse("spaces:detail", args=[Space.objects.get(owner=owner).public_id])


def test_it_gives_a_user_made_elsewhere_a_default_space_on_first_visit(client, db):
    user = User.objects.create_user(username="admin", password=PASSWORD)
    client.force_login(user)
    response = client.get(reverse("home"))
    space = Space.objects.get(owner=user, is_default=True)
    assert response.url == reverse("spaces:detail", args=[space.public_id])


def test_it_sends_anonymous_home_to_login(client, db):
    response = client.get(reverse("home"))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_rejects_wrong_method_on_home(owner_client):
    assert owner_client.post(reverse("home")).status_code == 405
