"""The environment page's websocket, through the real ASGI application and a real Redis layer."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from ale_site.asgi import application
from clusters.state import DEPLOYMENTS, EVENTS, NAMESPACES, PODS, ClusterState
from services.observed import write_changes
from django.utils import timezone

from environments.consumers import CLOSE_ENVIRONMENT_GONE, EnvironmentConsumer
from environments.models import ClusterEvent
from services import live
from services.models import Service
from tests.factories import make_environment

# serialized_rollback: the seeded `local` cluster must survive the flush after each test.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture(autouse=True)
def redis_layer(settings):
    """A real channels_redis layer under a prefix of its own, so runs never see each other."""
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"ale-test-{uuid.uuid4().hex[:12]}"},
        }
    }
    yield


@pytest.fixture
async def flush_layer():
    yield
    layer = get_channel_layer()
    await layer.flush()


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def socket(environment, *, user=None, origin: tuple[bytes, bytes] | None = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost")]
    if origin:
        headers.append(origin)
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    return WebsocketCommunicator(application, f"/ws/environments/{environment.public_id}/", headers=headers)


def make_service(environment, name: str = "web") -> Service:
    return Service.objects.create(environment=environment, name=name, image="nginx:1.27", port=80)


def running_deployment(service: Service) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": service.name,
            "namespace": service.environment.namespace,
            "generation": 1,
            "labels": {"app.kubernetes.io/managed-by": "ale", "ale.dev/service": service.public_id},
        },
        "spec": {"replicas": 1},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1},
    }


def publish_event(environment, number: int = 0, count: int = 1) -> ClusterEvent:
    """An event written and published as the watcher's writer does (services.observed)."""
    now = timezone.now()
    event, _ = ClusterEvent.objects.update_or_create(
        environment=environment,
        uid=f"uid-{number}",
        defaults=dict(reason="Scheduled", message=f"Successfully assigned pod {number}", involved_kind="Pod",
                      involved_name=f"web-{number}", count=count, first_seen=now, last_seen=now),
    )
    live.publish_events([event])
    return event


def change_status(service: Service, status: str) -> None:
    Service.objects.filter(pk=service.pk).update(status=status, status_changed_at=timezone.now())
    service.refresh_from_db()
    live.publish_service(service)


def watcher_sees(service: Service, deployment: dict) -> None:
    """What the watcher's writer does when a Deployment changes."""
    state = ClusterState()
    for kind in (NAMESPACES, DEPLOYMENTS, PODS, EVENTS):
        state.replace(kind, [])
    state.take_changes()
    state.apply(DEPLOYMENTS, "MODIFIED", deployment)
    write_changes(service.environment.cluster_id, state, state.take_changes())


async def test_it_sends_a_member_the_new_card_when_the_watcher_changes_the_status(member, main_env, flush_layer):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    connected, _ = await communicator.connect()
    assert connected

    await sync_to_async(watcher_sees)(service, running_deployment(service))

    html = await communicator.receive_from(timeout=5)
    # The card itself, whose root element carries the id the ws extension swaps by.
    assert f'id="service-{service.public_id}"' in html.split(">", 1)[0]
    assert ">Running<" in html
    await communicator.disconnect()


async def test_the_owner_gets_it_too_and_other_environments_do_not(owner, project, main_env, flush_layer):
    staging = await sync_to_async(make_environment)(project, by=owner, name="staging")
    service = await sync_to_async(make_service)(main_env)
    on_main, on_staging = await socket(main_env, user=owner), await socket(staging, user=owner)
    assert (await on_main.connect())[0] and (await on_staging.connect())[0]

    await sync_to_async(watcher_sees)(service, running_deployment(service))

    assert f'id="service-{service.public_id}"' in await on_main.receive_from(timeout=5)
    assert await on_staging.receive_nothing(timeout=0.5)
    await on_main.disconnect()
    await on_staging.disconnect()


async def test_it_refuses_an_anonymous_visitor(main_env):
    communicator = await socket(main_env)

    connected, code = await communicator.connect()

    assert not connected
    await communicator.disconnect()


async def test_it_refuses_an_outsider_like_a_missing_environment(outsider, main_env):
    refused = await socket(main_env, user=outsider)
    missing = WebsocketCommunicator(
        application,
        "/ws/environments/doesnotexist/",
        headers=[(b"host", b"localhost"), ORIGIN, (b"cookie", await sync_to_async(session_cookie)(outsider))],
    )

    assert (await refused.connect()) == (await missing.connect())
    assert (await refused.connect())[0] is False


async def test_it_refuses_a_foreign_origin(member, main_env):
    communicator = await socket(main_env, user=member, origin=(b"origin", b"https://evil.example.com"))

    connected, _ = await communicator.connect()

    assert not connected


async def test_it_ignores_what_the_browser_sends(member, main_env, flush_layer):
    service = await sync_to_async(make_service)(main_env)
    before = await sync_to_async(lambda: Service.objects.filter(pk=service.pk).values().get())()
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    await communicator.send_to(text_data='{"HEADERS": {}, "status": "running", "action": "stop"}')
    await communicator.send_to(text_data="not json at all <script>")
    await communicator.send_to(bytes_data=b"\x00\xff" * 1000)

    # Nothing comes back, nothing changed, and the socket still delivers updates.
    assert await communicator.receive_nothing(timeout=0.3)
    assert await sync_to_async(lambda: Service.objects.filter(pk=service.pk).values().get())() == before
    await sync_to_async(watcher_sees)(service, running_deployment(service))
    assert f'id="service-{service.public_id}"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_it_tells_open_pages_the_environment_is_gone_and_closes(member, main_env, flush_layer):
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    await sync_to_async(live.publish_environment_removed)(main_env.public_id)

    assert 'id="environment-notice"' in await communicator.receive_from(timeout=5)
    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_ENVIRONMENT_GONE}


async def test_it_leaves_the_group_on_disconnect(member, main_env, flush_layer):
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]
    await communicator.disconnect()
    await asyncio.sleep(0)

    layer = get_channel_layer()
    # channels_redis's own key for a group (a library internal: it has no public way to ask who
    # is in a group), to look at the group's members in Redis itself.
    group_key = layer._group_key(live.group_name(main_env.public_id))
    connection = layer.connection(layer.consistent_hash(group_key))
    assert await connection.zcard(group_key) == 0


async def test_it_sends_a_page_only_what_the_tab_it_shows_has(member, main_env, flush_layer):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    async def on_tab(tab: str) -> None:
        await communicator.send_to(text_data=json.dumps({"tab": tab}))
        assert await communicator.receive_nothing(timeout=0.2)  # and the consumer has read it

    async def publish_both() -> None:
        await sync_to_async(live.publish_service)(service)
        await sync_to_async(publish_event)(main_env)

    # Settings shows neither cards nor events.
    await on_tab("settings")
    await publish_both()
    assert await communicator.receive_nothing(timeout=0.5)

    await on_tab("events")
    await publish_both()
    assert "data-event-row" in await communicator.receive_from(timeout=5)
    assert await communicator.receive_nothing(timeout=0.5)

    await on_tab("information")
    await publish_both()
    assert f'id="service-{service.public_id}"' in await communicator.receive_from(timeout=5)
    assert await communicator.receive_nothing(timeout=0.5)

    # A tab it does not know, or a message too long to read, changes nothing.
    await on_tab("admin")
    await communicator.send_to(text_data=json.dumps({"tab": "events", "pad": "x" * 100}))
    await publish_both()
    assert f'id="service-{service.public_id}"' in await communicator.receive_from(timeout=5)
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_page_that_has_not_said_its_tab_is_sent_everything(member, main_env, flush_layer):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    await sync_to_async(live.publish_service)(service)
    await sync_to_async(publish_event)(main_env)

    # Both: the card at once, the event with it or in the window's message after it.
    html = await communicator.receive_from(timeout=5)
    if "data-event-row" not in html:
        html += await communicator.receive_from(timeout=5)
    assert f'id="service-{service.public_id}"' in html
    assert "data-event-row" in html
    await communicator.disconnect()


def top_level_ids(html: str) -> list[str]:
    """The ids of a message's top-level elements, in order (each replaces the page's element)."""
    from html.parser import HTMLParser

    ids: list[str] = []

    class Parser(HTMLParser):
        depth = 0

        def handle_starttag(self, tag, attrs):
            if self.depth == 0:
                ids.append(dict(attrs).get("id") or tag)
            if tag not in ("br", "input", "img", "hr", "meta", "link"):
                self.depth += 1

        def handle_endtag(self, tag):
            self.depth -= 1

    Parser().feed(html)
    return ids


@pytest.fixture
def wide_window(monkeypatch):
    """A coalescing window wide enough that a loaded machine's changes all fall inside it: what
    is asserted is what the window does, not how short it is."""
    monkeypatch.setattr("environments.consumers.COALESCE_SECONDS", 1.5)


async def test_changes_of_one_card_within_the_window_reach_the_page_as_its_newest_card_once(
    member, main_env, flush_layer, wide_window
):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    for status in ("deploying", "failed", "deploying", "running"):
        await sync_to_async(change_status)(service, status)

    # The first change after a quiet spell goes at once; the others wait for the window, and of
    # them only the newest goes.
    messages = [await communicator.receive_from(timeout=5)]
    if ">Running<" not in messages[0]:
        messages.append(await communicator.receive_from(timeout=5))
    assert [top_level_ids(html) for html in messages] == [[f"service-{service.public_id}"]] * len(messages)
    assert ">Running<" in messages[-1]
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_change_after_a_quiet_spell_does_not_wait_for_the_window(member, main_env, flush_layer, wide_window):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    await sync_to_async(change_status)(service, "stopped")

    # Well within the window of 1.5 s: what a person's click changed shows at once.
    html = await communicator.receive_from(timeout=1)
    assert top_level_ids(html) == [f"service-{service.public_id}"]
    assert ">Stopped<" in html
    await communicator.disconnect()


async def test_a_card_and_the_progress_banner_of_one_commit_arrive_in_one_message(
    member, main_env, flush_layer, wide_window
):
    service = await sync_to_async(make_service)(main_env)

    def start_all_in_flight() -> None:
        Service.objects.filter(pk=service.pk).update(desired_state="running", status="deploying")
        type(main_env).objects.filter(pk=main_env.pk).update(
            bulk_action="start", bulk_service_ids=[service.pk], bulk_started_at=timezone.now()
        )

    await sync_to_async(start_all_in_flight)()
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]

    # The watcher sees the last service of the batch ready: its card and the banner that says
    # the batch is done are published by one commit, and reach the page as one message, well
    # before the window of 1.5 s would have let a second one go.
    await sync_to_async(watcher_sees)(service, running_deployment(service))
    html = await communicator.receive_from(timeout=1)
    assert sorted(top_level_ids(html)) == sorted([f"service-{service.public_id}", "environment-progress"])
    assert ">Running<" in html
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_a_card_and_the_event_rows_of_one_commit_arrive_in_one_message(member, main_env, flush_layer, wide_window):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]  # no tab said yet: it is sent every tab's updates

    def one_commit() -> int:
        """What the watcher's writer publishes for a pod that started: its card, then its event,
        two trips to the channel layer."""
        with transaction.atomic():
            change_status(service, "running")
            return publish_event(main_env, 7).pk

    event_pk = await sync_to_async(one_commit)()
    html = await communicator.receive_from(timeout=1)
    assert f"service-{service.public_id}" in top_level_ids(html)
    assert f'id="event-{event_pk}"' in html
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_cards_of_fifty_services_changed_together_arrive_in_one_message(
    member, main_env, flush_layer, wide_window
):
    services = await sync_to_async(lambda: [make_service(main_env, f"svc-{index}") for index in range(50)])()

    def all_running() -> None:
        """What the watcher's writer does for a batch of changed services."""
        Service.objects.filter(environment=main_env).update(status="running", status_changed_at=timezone.now())
        live.publish_services(Service.objects.filter(environment=main_env).select_related("environment"))

    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]
    await sync_to_async(all_running)()

    html = await communicator.receive_from(timeout=5)
    assert sorted(top_level_ids(html)) == sorted(f"service-{service.public_id}" for service in services)
    assert html.count(">Running<") == 50
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_an_event_reaches_the_events_tab_as_its_row_alone_and_the_information_tab_not_at_all(
    member, main_env, flush_layer
):
    await sync_to_async(lambda: [publish_event(main_env, number) for number in range(30)])()
    on_information, on_events = await socket(main_env, user=member), await socket(main_env, user=member)
    assert (await on_information.connect())[0] and (await on_events.connect())[0]
    await on_information.send_to(text_data=json.dumps({"tab": "information"}))
    await on_events.send_to(text_data=json.dumps({"tab": "events"}))
    assert await on_events.receive_nothing(timeout=0.2)

    event = await sync_to_async(publish_event)(main_env, 99)

    html = await on_events.receive_from(timeout=5)
    # The new row only, not the 31 the tab lists.
    assert html.count("<tr") == 1
    assert f'id="event-{event.pk}"' in html and "Successfully assigned pod 99" in html
    assert 'id="event-list"' not in html
    assert await on_information.receive_nothing(timeout=0.5)

    # A repeat bumps the count of the same row.
    await sync_to_async(publish_event)(main_env, 99, count=2)
    html = await on_events.receive_from(timeout=5)
    assert html.count("<tr") == 1 and f'id="event-{event.pk}"' in html
    assert '<td class="event-count">2</td>' in html
    await on_information.disconnect()
    await on_events.disconnect()


async def test_events_written_together_reach_the_events_tab_as_their_rows_and_never_another_environments(
    owner, project, member, main_env, flush_layer
):
    staging = await sync_to_async(make_environment)(project, by=owner, name="staging")
    on_events = await socket(main_env, user=member)
    assert (await on_events.connect())[0]
    await on_events.send_to(text_data=json.dumps({"tab": "events"}))

    ours = await sync_to_async(lambda: [publish_event(main_env, number) for number in range(5)])()
    theirs = await sync_to_async(publish_event)(staging, 7)
    # Even named in a message to this page's group, another environment's event is not read.
    await get_channel_layer().group_send(
        live.group_name(main_env.public_id), {"type": live.PAGE_EVENTS, "events": [theirs.pk], "tab": "events"}
    )

    html = await on_events.receive_from(timeout=5)
    while not await on_events.receive_nothing(timeout=0.5):  # a slow machine may split the window
        html += await on_events.receive_from(timeout=5)
    assert html.count("<tr") == 5
    assert all(f'id="event-{event.pk}"' in html for event in ours)
    assert f'id="event-{theirs.pk}"' not in html
    await on_events.disconnect()


async def test_a_fragment_goes_to_the_pages_on_its_tab(member, main_env, flush_layer, wide_window):
    on_information, on_settings = await socket(main_env, user=member), await socket(main_env, user=member)
    assert (await on_information.connect())[0] and (await on_settings.connect())[0]
    await on_information.send_to(text_data=json.dumps({"tab": "information"}))
    await on_settings.send_to(text_data=json.dumps({"tab": "settings"}))
    assert await on_information.receive_nothing(timeout=0.2)

    for started in (1, 2, 3):
        await sync_to_async(live.publish_fragment)(
            main_env.public_id, f'<div id="environment-progress">Starting {started} of 3</div>', "information"
        )

    # The first banner at once at most, then the newest, once.
    newest = '<div id="environment-progress">Starting 3 of 3</div>'
    messages = [await on_information.receive_from(timeout=5)]
    if messages[0] != newest:
        messages.append(await on_information.receive_from(timeout=5))
    assert messages[-1] == newest and len(messages) <= 2
    assert await on_information.receive_nothing(timeout=0.5)
    assert await on_settings.receive_nothing(timeout=0.5)
    await on_information.disconnect()
    await on_settings.disconnect()


async def test_a_page_that_closes_within_the_window_leaves_nothing_behind(member, main_env, flush_layer, wide_window):
    service = await sync_to_async(make_service)(main_env)
    communicator = await socket(main_env, user=member)
    assert (await communicator.connect())[0]
    # A first change goes at once and opens the window the next one waits in.
    await sync_to_async(change_status)(service, "deploying")
    assert ">Deploying<" in await communicator.receive_from(timeout=5)
    consumers: list[EnvironmentConsumer] = []
    original = EnvironmentConsumer.page_fragments

    async def noting(self, event):
        consumers.append(self)
        await original(self, event)

    EnvironmentConsumer.page_fragments = noting
    try:
        await sync_to_async(change_status)(service, "running")
        for _ in range(100):
            if consumers and consumers[0].flush_task is not None:
                break
            await asyncio.sleep(0.01)
        assert consumers and consumers[0].flush_task is not None, "the card never reached the consumer"
        task = consumers[0].flush_task
        await communicator.disconnect()
    finally:
        EnvironmentConsumer.page_fragments = original

    assert task.cancelled()
    assert consumers[0].flush_task is None and consumers[0].held == {}


async def test_a_page_gone_before_its_update_is_sent_leaves_no_error():
    """The browser closed after a window began and before its disconnect reached the consumer:
    the send fails (daphne raises), and neither the window's task nor the disconnect does."""
    consumer = EnvironmentConsumer()

    async def closed_protocol(message):
        raise OSError("Attempt to send on a closed protocol")

    consumer.base_send = closed_protocol
    await consumer.page_fragments({"fragments": [("service-abc", '<article id="service-abc"></article>')], "tab": None})
    task = consumer.flush_task
    await asyncio.wait_for(task, timeout=5)
    assert task.exception() is None and consumer.closed
    await consumer.disconnect(1001)


def _redis_client_ids_of_this_process(redis_url: str) -> set[int]:
    """The ids Redis gave this process's open connections to it."""
    import psutil
    import redis

    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    ours = {
        c.laddr.port
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }
    with redis.Redis.from_url(redis_url) as connection:
        clients = connection.client_list()
    return {int(c["id"]) for c in clients if int(c["addr"].rsplit(":", 1)[1]) in ours}


@pytest.mark.django_db
def test_sends_from_a_writer_keep_one_connection_to_redis_open(settings):
    live.send_now([("somewhere", {"type": "card.update"})])
    first = _redis_client_ids_of_this_process(settings.REDIS_URL)

    for _ in range(10):
        live.send_now([("somewhere", {"type": "card.update"}), ("elsewhere", {"type": "card.update"})])

    # The connection the first send opened is the one the next ten used: none was opened anew.
    assert first
    assert _redis_client_ids_of_this_process(settings.REDIS_URL) == first
