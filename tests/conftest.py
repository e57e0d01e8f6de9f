from __future__ import annotations

from collections.abc import Generator

import pytest
from django.db import connections
from django.test import Client
from pytest_django.fixtures import validate_django_db
from pytest_django.plugin import blocking_manager_key

from environments.models import Environment
from spaces.models import Project, Space
from tests.factories import make_project, make_space, make_user


@pytest.fixture
def transactional_db(django_db_serialized_rollback, transactional_db):
    """Every test that commits keeps the rows the migrations seed (the `local` cluster, the
    resource profiles, the content types). A flush without serialized rollback re-creates
    content types on `post_migrate` under new ids, and loading the seeds again would then clash
    with them; so no test may flush without it. Tests asking for `django_db(transaction=True)`
    say `serialized_rollback=True` for the same reason."""
    return transactional_db


def _flushes_the_database(item: pytest.Item) -> bool:
    # The same test pytest-django makes to choose a flushing TransactionTestCase over a
    # rolled-back TestCase.
    marker = item.get_closest_marker("django_db")
    if marker is not None:
        transaction, reset_sequences, *_ = validate_django_db(marker)
        if transaction or reset_sequences:
            return True
    fixtures = set(getattr(item, "fixturenames", ()))
    return bool(fixtures & {"transactional_db", "live_server", "django_db_reset_sequences"})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    """After a test that committed, put the seeded rows back at once.

    Django flushes every table after such a test and loads the seeds again only when the next
    serialized-rollback test starts, so a plain `db` test that ran next would find no `local`
    cluster, no resource profiles and no content types. pytest-django hides that by running all
    transactional tests last, but xdist hands each worker whole files, one after another, so
    there a file's `db` tests often follow another file's transactional ones. Restoring here
    leaves the database as the migrations made it between any two tests, in any order. After
    the last test the session has already dropped the test database: nothing to restore."""
    try:
        return (yield)
    finally:
        if nextitem is not None and _flushes_the_database(item):
            with item.config.stash[blocking_manager_key].unblock():
                for connection in connections.all():
                    seeds = getattr(connection, "_test_serialized_contents", None)
                    if seeds:
                        connection.creation.deserialize_db_from_string(seeds)


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
