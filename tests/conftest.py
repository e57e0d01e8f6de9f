from __future__ import annotations

import pytest
from django.test import Client

from environments.models import Environment
from spaces.models import Project, Space
from tests.factories import make_project, make_space, make_user


@pytest.fixture
def transactional_db(django_db_serialized_rollback, transactional_db):
    """Every test that commits keeps the rows the migrations seed (the `local` cluster, the
    resource profiles). A flush without serialized rollback re-creates content types on
    `post_migrate`, and the next serialized test would then load them a second time; so no
    test may flush without it. Tests asking for `django_db(transaction=True)` say
    `serialized_rollback=True` for the same reason."""
    return transactional_db


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def member(db):
    return make_user("member")


@pytest.fixture
def outsider(db):
    return make_user("outsider")


@pytest.fixture
def space(owner, member) -> Space:
    """A shared space: `owner` owns it, `member` is a member, `outsider` is not in it."""
    return make_space(owner=owner, members=(member,), name="team")


@pytest.fixture
def project(space, owner) -> Project:
    return make_project(space, by=owner, name="shop", display_name="Shop")


@pytest.fixture
def main_env(project) -> Environment:
    return project.environments.get(name="main")


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner_client(owner) -> Client:
    return _client_for(owner)


@pytest.fixture
def member_client(member) -> Client:
    return _client_for(member)


@pytest.fixture
def outsider_client(outsider) -> Client:
    return _client_for(outsider)


@pytest.fixture
def htmx_headers() -> dict[str, str]:
    return {"HX-Request": "true"}


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 at its production cost would be most of the suite's run time.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
