"""Who may do what, for every page and action of spaces, projects, environments and services,
and every socket: an owner, a member, an outsider and an anonymous visitor.

The list of views is read from the URL configuration, so a view added later is in the matrix
without anyone remembering to add it; `EXPECTED_VIEWS` then fails until it is classified.
"""

from __future__ import annotations

import uuid

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from environments.models import Environment
from services.models import Service
from spaces.invitations import invite
from spaces.models import Space
from tests.factories import make_project, make_space, make_user
from tests.spaces.helpers import deploy

NAMESPACES = ("spaces", "environments", "services")

# Only owners: members get 403 (they know the space exists), outsiders 404.
OWNER_ONLY = {
    "spaces:settings",
    "spaces:rename",
    "spaces:delete",
    "spaces:invite",
    "spaces:member-role",
    "spaces:member-remove",
    "spaces:invitation-revoke",
    "spaces:audit",
    "spaces:audit-csv",
    "environments:terminal-access",
}
# Open to anyone with the link: what it shows depends on the token.
PUBLIC = {"spaces:invitation"}
# Not about any space: every signed-in user may, outsiders of the test's space included.
SIGNED_IN = {"spaces:create"}


def _names() -> list[str]:
    names = []
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace in NAMESPACES:
            names += [f"{entry.namespace}:{p.name}" for p in entry.url_patterns if isinstance(p, URLPattern)]
    return sorted(names)


ALL_VIEWS = _names()


def test_every_view_is_in_the_matrix():
    # A guard: the URL configuration must hold the views this file was written for.
    assert len(ALL_VIEWS) >= 40
    assert OWNER_ONLY | PUBLIC | SIGNED_IN <= set(ALL_VIEWS)


class World:
    def __init__(self) -> None:
        self.owner = make_user("owner")
        self.member = make_user("member")
        self.outsider = make_user("outsider")
        self.space = make_space(owner=self.owner, members=(self.member,), name="team")
        self.project = make_project(self.space, by=self.owner, name="shop")
        self.environment: Environment = self.project.environments.get()
        self.service: Service = deploy(self.environment, self.owner)
        result = invite(acting_user=self.owner, space=self.space, who="new@example.com", role="member", base_url="http://testserver/")
        self.token = result.token
        self.invitation_ref = result.invitation.token_hash[:16]

    def kwargs_for(self, name: str) -> dict[str, object]:
        values = {
            "space_id": self.space.public_id,
            "project_id": self.project.public_id,
            "env_id": self.environment.public_id,
            "service_id": self.service.public_id,
            "number": 1,
            "username": "member",
            "ref": self.invitation_ref,
            "token": self.token,
            "space_name": self.space.name,
            "project_name": self.project.name,
        }
        pattern = next(
            p for r in get_resolver().url_patterns if isinstance(r, URLResolver) and r.namespace == name.split(":")[0]
            for p in r.url_patterns if isinstance(p, URLPattern) and p.name == name.split(":")[1]
        )
        return {key: values[key] for key in pattern.pattern.converters}


def _request(client: Client, url: str):
    """GET, or POST (with no data) where GET is not allowed: every view answers one of them."""
    response = client.get(url)
    if response.status_code == 405:
        response = client.post(url)
    return response


def _client(user=None) -> Client:
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("name", ALL_VIEWS)
@pytest.mark.parametrize("role", ["owner", "member", "outsider", "anonymous"])
def test_the_matrix(name, role):
    world = World()
    url = reverse(name, kwargs=world.kwargs_for(name))
    user = None if role == "anonymous" else getattr(world, role)
    response = _request(_client(user), url)
    status = response.status_code
    if name in PUBLIC:
        assert status in (200, 302), (name, role, status)
    elif role == "anonymous":
        assert status == 302 and response.url.startswith(reverse("login")), (name, status)
    elif name in SIGNED_IN:
        assert status not in (403, 404, 500), (name, role, status)
    elif role == "outsider":
        assert status == 404, (name, status)
    elif role == "member" and name in OWNER_ONLY:
        assert status == 403, (name, status)
    else:
        # Allowed: a page, a redirect after an action, a form's 422 or a cluster's 502 —
        # anything but "not yours".
        assert status not in (403, 404, 500), (name, role, status)
    if role in ("outsider", "anonymous") and name not in PUBLIC:
        # Nothing changed: the space is whole and its service as it was.
        assert Space.objects.filter(pk=world.space.pk, name="team").exists()
        assert Service.objects.get(pk=world.service.pk).status == Service.Status.DEPLOYING
        assert world.space.memberships.count() == 2


# --- sockets -------------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://localhost")


def _cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


@pytest.fixture
def redis_layer(settings):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"ale-test-{uuid.uuid4().hex[:12]}"},
        }
    }


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("path", ["/ws/environments/{env}/", "/ws/services/{service}/logs/", "/ws/services/{service}/terminal/"])
@pytest.mark.parametrize(("role", "admitted"), [("owner", True), ("member", True), ("outsider", False), ("anonymous", False)])
async def test_the_sockets(redis_layer, path, role, admitted):
    from channels.testing import WebsocketCommunicator

    from ale_site.asgi import application

    world = await sync_to_async(World)()
    headers = [(b"host", b"localhost"), ORIGIN]
    if role != "anonymous":
        headers.append((b"cookie", await sync_to_async(_cookie)(getattr(world, role))))
    url = path.format(env=world.environment.public_id, service=world.service.public_id)
    communicator = WebsocketCommunicator(application, url, headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    assert connected is admitted
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
async def test_a_member_gets_no_terminal_where_only_owners_may(redis_layer):
    from channels.testing import WebsocketCommunicator

    from ale_site.asgi import application

    world = await sync_to_async(World)()
    await sync_to_async(Environment.objects.filter(pk=world.environment.pk).update)(terminal_access="owners_only")
    url = f"/ws/services/{world.service.public_id}/terminal/"
    for role, admitted in (("member", False), ("owner", True)):
        headers = [(b"host", b"localhost"), ORIGIN, (b"cookie", await sync_to_async(_cookie)(getattr(world, role)))]
        communicator = WebsocketCommunicator(application, url, headers=headers)
        connected, _ = await communicator.connect(timeout=5)
        assert connected is admitted, role
        await communicator.disconnect()
