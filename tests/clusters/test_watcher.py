"""The watcher against the devcluster, for real: statuses, events, dropped watches, restarts."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from django.db import connection
from django.test.utils import CaptureQueriesContext

from clusters.client import client_for
from clusters.models import Cluster
from clusters.state import DEPLOYMENTS, EVENTS, KINDS, Changes, ClusterState, WriteResult
from clusters.watch import LIST_PAGE_SIZE
from services.resync import resync
from clusters.watcher import MAX_PENDING_EVENTS, PROMPT_SERVICES, ClusterWatcher, WatchManager
from environments.manifests import render_environment
from environments.models import ClusterEvent, Environment
from services.manifests import render_service
from services.models import Service
from services.observed import write_changes
from tests.fixtures.devcluster import devcluster  # noqa: F401 - the embedded devcluster, faults included

# The watcher's threads read what the test commits; serialized_rollback keeps the seeded
# `local` cluster that the project factory needs across the flushes.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

TIMEOUT = 30.0


def wait_for(check: Callable[[], object], what: str, timeout: float = TIMEOUT) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture
def cluster(devcluster, tmp_path) -> Cluster:  # noqa: F811
    """A cluster registered like operations would, from the kubeconfig of the embedded devcluster
    (embedded rather than the shared process, so that this module can inject faults)."""
    kubeconfig = devcluster.write_kubeconfig(tmp_path / "kubeconfig")
    return Cluster.objects.create(name="dev", connection=Cluster.Connection.KUBECONFIG, kubeconfig=kubeconfig.read_text())


@pytest.fixture
def environment(main_env, cluster) -> Environment:
    """The project's main environment, moved to the devcluster and its namespace applied."""
    Environment.objects.filter(pk=main_env.pk).update(cluster=cluster)
    environment = Environment.objects.select_related("project__space", "cluster").get(pk=main_env.pk)
    client_for(cluster).apply(render_environment(environment))
    return environment


@pytest.fixture
def watcher(cluster) -> Iterator[ClusterWatcher]:
    running = ClusterWatcher(cluster, flush_interval=0.05, watch_timeout=10, backoff_cap=1.0)
    running.start()
    wait_for(lambda: running.synced, "the first lists")
    yield running
    running.stop()
    assert running.join(timeout=5), "the watcher did not stop"


def make_service(environment: Environment, name: str, image: str, replicas: int = 1) -> Service:
    service = Service.objects.create(environment=environment, name=name, image=image, port=80, replicas=replicas)
    return Service.objects.select_related("environment__project__space", "environment__cluster").get(pk=service.pk)


def deploy(service: Service) -> None:
    """What the reconcile task applies: the service's own manifests, with ale's labels."""
    client_for(service.environment.cluster).apply(render_service(service))


def row(service: Service) -> tuple[str, str, int]:
    fresh = Service.objects.get(pk=service.pk)
    return fresh.status, fresh.status_reason, fresh.ready_replicas


def record_statuses(service: Service, stop: threading.Event) -> tuple[threading.Thread, list]:
    """Every distinct (status, reason, ready) the row goes through, sampled every 20 ms."""
    seen: list[tuple[str, str, int]] = []

    def sample() -> None:
        from django.db import connection

        try:
            while not stop.is_set():
                current = row(service)
                if not seen or seen[-1] != current:
                    seen.append(current)
                time.sleep(0.02)
        finally:
            connection.close()

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread, seen


def test_it_follows_a_service_from_deploying_to_running(environment, watcher):
    service = make_service(environment, "web", "nginx:1.27", replicas=2)
    stop = threading.Event()
    sampler, seen = record_statuses(service, stop)

    deploy(service)
    wait_for(lambda: row(service) == ("running", "", 2), "web running with 2 ready replicas")
    stop.set()
    sampler.join()
    if seen[-1] != row(service):
        seen.append(row(service))

    statuses = [status for status, _, _ in seen]
    assert statuses[0] == "deploying" and statuses[-1] == "running"
    # What it says in between depends on how quickly the pods start (tests/services/test_status.py
    # pins each wording); here every state before running is a deploying one.
    assert all(status == "deploying" for status in statuses[:-1])
    assert "failed" not in statuses


def test_it_fails_a_service_whose_image_does_not_exist(environment, watcher):
    image = "registry.example.com/team/does-not-exist:1.0"
    service = make_service(environment, "broken", image)

    deploy(service)

    status, reason, ready = wait_for(lambda: row(service)[0] == "failed" and row(service), "broken failed")
    assert reason == f"Image {image} could not be pulled: it does not exist or the cluster has no access to it."
    assert ready == 0


def test_it_fails_a_service_whose_container_keeps_crashing(environment, watcher):
    service = make_service(environment, "crashy", "example.com/crash:1")

    deploy(service)

    _, reason, _ = wait_for(lambda: row(service)[0] == "failed" and row(service), "crashy failed")
    assert reason.startswith("The container keeps crashing (restarted ")
    assert reason.endswith("Open the logs to see why.")


def test_it_stops_a_service_scaled_to_zero(environment, watcher):
    service = make_service(environment, "web", "nginx:1.27")
    deploy(service)
    wait_for(lambda: row(service)[0] == "running", "web running")

    Service.objects.filter(pk=service.pk).update(desired_state="stopped", generation=2)
    service.refresh_from_db()
    deploy(service)

    wait_for(lambda: row(service) == ("stopped", "", 0), "web stopped")


def test_it_stores_the_events_of_the_environment(environment, watcher):
    service = make_service(environment, "web", "nginx:1.27")

    deploy(service)
    wait_for(lambda: row(service)[0] == "running", "web running")

    events = wait_for(
        lambda: list(ClusterEvent.objects.filter(environment=environment, reason="Started")), "a Started event"
    )
    assert events[0].service_id == service.pk
    assert events[0].involved_kind == "Pod" and events[0].involved_name.startswith("web-")
    assert ClusterEvent.objects.filter(environment=environment, involved_kind="Deployment", involved_name="web",
                                       reason="ScalingReplicaSet", service=service).exists()


def test_it_resumes_after_the_cluster_drops_its_watches(environment, watcher, devcluster):  # noqa: F811
    service = make_service(environment, "web", "nginx:1.27")
    deploy(service)
    wait_for(lambda: row(service)[0] == "running", "web running")
    watches_before = sum(w.watches for w in watcher.watchers)

    devcluster.faults.drop_watches()
    Service.objects.filter(pk=service.pk).update(replicas=3, generation=2)
    service.refresh_from_db()
    deploy(service)

    wait_for(lambda: row(service) == ("running", "", 3), "web running with 3 replicas after the drop")
    assert sum(w.watches for w in watcher.watchers) > watches_before


def test_a_relist_after_410_that_finds_the_cluster_as_it_was_writes_nothing(environment, cluster, devcluster):  # noqa: F811
    web = make_service(environment, "web", "nginx:1.27", replicas=2)
    api = make_service(environment, "api", "nginx:1.27")
    flushes: list[tuple[Changes, list[str], WriteResult]] = []

    def recording_writer(cluster_id: int, state: ClusterState, changes: Changes) -> WriteResult:
        handed = Changes(set(changes.services), changes.all_services, dict(changes.events))
        with CaptureQueriesContext(connection) as queries:
            result = write_changes(cluster_id, state, changes)
        flushes.append((handed, [query["sql"] for query in queries.captured_queries], result))
        return result

    watcher = ClusterWatcher(cluster, flush_interval=0.05, watch_timeout=10, backoff_cap=1.0, writer=recording_writer)
    watcher.start()
    try:
        deploy(web)
        deploy(api)
        wait_for(lambda: row(web) == ("running", "", 2) and row(api) == ("running", "", 1), "both running")
        wait_for(lambda: settled(flushes), "the writer to have nothing left to store")
        syncs = [w.syncs for w in watcher.watchers]
        flushes.clear()

        expire_every_watch(devcluster)
        wait_for(lambda: all(w.syncs > before for w, before in zip(watcher.watchers, syncs)), "every kind relisted")
        wait_for(lambda: settled(flushes), "the writer to have nothing left to store")
    finally:
        watcher.stop()
        assert watcher.join(timeout=5)

    statements = [sql for _, queries, _ in flushes for sql in queries]
    assert [sql for sql in statements if sql.startswith(("UPDATE", "INSERT"))] == []
    assert [service for _, _, result in flushes for service in result.changed] == []  # no card published
    # Nothing of this environment differed from what the watcher held: none of it was handed to
    # the writer again (other tests' leftovers in the module's devcluster may still be moving).
    assert not any(changes.all_services for changes, _, _ in flushes)
    assert not {web.public_id, api.public_id} & {s for changes, _, _ in flushes for s in changes.services}
    assert not [e for changes, _, _ in flushes for e in changes.events.values()
                if e["metadata"]["namespace"] == environment.namespace]


def expire_every_watch(devcluster) -> None:  # noqa: F811
    """Make every resourceVersion handed out so far too old (an etcd compaction) and cut the
    watches, in one step of the devcluster's loop: each watch reconnects, gets 410 and relists."""
    store = devcluster.server.store

    def expire() -> None:
        store.compacted_rv = store.rv + 1
        # One write elsewhere, so that a list's resourceVersion is not too old itself.
        store.put("configmaps", {"metadata": {"name": "compaction", "namespace": "default"}, "data": {}})
        devcluster.faults.drop_watches()

    devcluster.call(expire)


def settled(flushes: list, quiet: float = 1.0) -> bool:
    """True once no flush happened for `quiet` seconds (polled by `wait_for`)."""
    count = len(flushes)
    time.sleep(quiet)
    return len(flushes) == count


def put_events(devcluster, namespace: str, count: int, reason: str) -> None:  # noqa: F811
    """`count` events about pods of `namespace`, straight into the devcluster's store (what a
    busy cluster holds after an hour of rollouts)."""
    store = devcluster.server.store
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def put() -> None:
        for i in range(count):
            store.put("events", {
                "apiVersion": "v1", "kind": "Event",
                "metadata": {"name": f"web-7d9f8b6c5-{i:05d}.{reason.lower()}", "namespace": namespace,
                             "uid": f"{reason.lower()}-{i:05d}", "creationTimestamp": now},
                "involvedObject": {"kind": "Pod", "name": f"web-7d9f8b6c5-{i:05d}", "namespace": namespace},
                "reason": reason, "message": f"Event {i}", "type": "Normal", "count": 1,
                "source": {"component": "kubelet"}, "firstTimestamp": now, "lastTimestamp": now,
            })  # fmt: skip

    devcluster.call(put)


def test_a_big_first_list_of_events_is_stored_while_it_is_fetched(environment, cluster, devcluster):  # noqa: F811
    count = MAX_PENDING_EVENTS + 4 * LIST_PAGE_SIZE
    put_events(devcluster, environment.namespace, count, "Backlog")
    # Per call of the writer: events handed over, whether the list of events was complete,
    # events still waiting in the watcher.
    calls: list[tuple[int, bool, int]] = []

    def recording_writer(cluster_id: int, state: ClusterState, changes: Changes) -> WriteResult:
        calls.append((len(changes.events), events_watcher.syncs > 0, state.pending()[1]))
        return write_changes(cluster_id, state, changes)

    watcher = ClusterWatcher(cluster, flush_interval=0.05, watch_timeout=10, writer=recording_writer)
    events_watcher = next(w for w in watcher.watchers if w.kind == EVENTS)
    watcher.start()
    try:
        wait_for(lambda: ClusterEvent.objects.filter(environment=environment, reason="Backlog").count() == count,
                 "every event stored")
    finally:
        watcher.stop()
        assert watcher.join(timeout=5)

    # The writer stored events before the list of events was complete...
    assert any(handed and not listed for handed, listed, _ in calls)
    # ... and the watcher never held more than a page beyond what the list waits for.
    assert max(handed + waiting for handed, _, waiting in calls) <= MAX_PENDING_EVENTS + LIST_PAGE_SIZE


def test_it_stops_within_seconds_in_the_middle_of_a_long_list_of_events(environment, cluster, devcluster):  # noqa: F811
    put_events(devcluster, environment.namespace, 12 * LIST_PAGE_SIZE, "Slow")
    # Each page of the list takes half a second: the whole list, six.
    rule = devcluster.faults.latency(0.5, path="^/api/v1/events$", method="GET")
    watcher = ClusterWatcher(cluster, flush_interval=0.05, watch_timeout=10)
    watcher.start()
    try:
        wait_for(lambda: ClusterEvent.objects.filter(environment=environment, reason="Slow").exists(),
                 "the first events stored")
    finally:
        started = time.monotonic()
        watcher.stop()
        stopped = watcher.join(timeout=5)
        devcluster.faults.remove(rule)

    assert stopped and time.monotonic() - started < 2


def test_a_few_status_changes_are_stored_at_once_not_at_the_next_interval(environment, cluster):
    # An interval longer than the wait below: only a prompt flush makes the card follow.
    watcher = ClusterWatcher(cluster, flush_interval=3600, watch_timeout=10, backoff_cap=1.0)
    watcher.start()
    try:
        wait_for(lambda: watcher.synced and watcher.flushes, "the first lists stored")
        service = make_service(environment, "web", "nginx:1.27")

        deploy(service)

        wait_for(lambda: row(service) == ("running", "", 1), "web running")
    finally:
        watcher.stop()
        assert watcher.join(timeout=5)


def test_the_end_of_a_storm_is_stored_at_once_not_at_the_next_interval(environment, cluster):
    # More services than a prompt flush takes change together (a Start All), right after a
    # flush: a storm, whose changes the writer gathers for an interval, here an hour. Once the
    # cluster has nothing more to say, they are due, not at the end of the hour.
    watcher = ClusterWatcher(cluster, flush_interval=3600, watch_timeout=10, backoff_cap=1.0)
    state = watcher.state
    for kind in KINDS:
        state.replace(kind, [])
    state.take_changes()
    services = [make_service(environment, f"web{i:02d}", "nginx:1.27") for i in range(2 * PROMPT_SERVICES)]
    deployments = [m for s in services for m in render_service(s) if m["kind"] == "Deployment"]

    # The first change is waiting as the writer looks: it has something to wait for.
    state.apply(DEPLOYMENTS, "ADDED", deployments[0])
    due: list[bool] = []
    writer = threading.Thread(target=lambda: due.append(watcher._wait_until_due(time.monotonic())))
    writer.start()
    for deployment in deployments[1:]:
        state.apply(DEPLOYMENTS, "ADDED", deployment)
        time.sleep(0.005)
    writer.join(timeout=5)
    watcher.stop_event.set()  # releases a writer still waiting for its interval
    writer.join()

    assert due == [True], "the last changes of the storm waited for the end of the interval"


def test_a_restarted_watcher_rebuilds_its_state_and_repairs_the_database(environment, cluster):
    web = make_service(environment, "web", "nginx:1.27")
    gone = make_service(environment, "gone", "nginx:1.27")
    first = ClusterWatcher(cluster, flush_interval=0.05, watch_timeout=10)
    first.start()
    deploy(web)
    deploy(gone)
    wait_for(lambda: row(web)[0] == "running" and row(gone)[0] == "running", "both running")
    first.stop()
    assert first.join(timeout=5)

    # While nobody watches: `gone`'s objects vanish, and `web`'s row is damaged.
    kube = client_for(cluster)
    kube.delete("apps/v1", "Deployment", "gone", environment.namespace)
    wait_for(lambda: not kube.list("v1", "Pod", namespace=environment.namespace,
                                   label_selector=f"ale.dev/service={gone.public_id}")[0], "gone's pods deleted")
    Service.objects.filter(pk=web.pk).update(status="deploying", status_reason="stale", ready_replicas=0)

    second = ClusterWatcher(cluster, flush_interval=0.05, watch_timeout=10)
    second.start()
    try:
        wait_for(lambda: row(web) == ("running", "", 1), "web repaired")
        wait_for(lambda: row(gone)[0] == "deploying" and row(gone)[2] == 0, "gone back to deploying")
    finally:
        second.stop()
        assert second.join(timeout=5)


def test_the_resync_repairs_what_no_watch_reported(environment, cluster):
    service = make_service(environment, "web", "nginx:1.27")
    deploy(service)
    kube = client_for(cluster)
    wait_for(lambda: (kube.get("apps/v1", "Deployment", "web", environment.namespace) or {})
             .get("status", {}).get("readyReplicas") == 1, "the deployment ready")

    totals = resync()

    assert totals["clusters"] == 1 and totals["changed"] == 1
    assert row(service) == ("running", "", 1)
    assert resync()["changed"] == 0


def test_the_manager_watches_clusters_as_they_come_and_go(environment, cluster):
    manager = WatchManager(refresh_interval=3600, flush_interval=0.05, watch_timeout=10)
    try:
        manager.refresh()
        assert set(manager.watchers) == {cluster.pk}
        watcher = manager.watchers[cluster.pk]
        wait_for(lambda: watcher.synced, "the manager's watcher synced")

        Environment.objects.filter(pk=environment.pk).update(cluster=Cluster.objects.get(name="local"))
        manager.refresh()

        assert cluster.pk not in manager.watchers
        assert not any(thread.is_alive() for thread in watcher.threads)
    finally:
        manager.stop_all()


def test_a_cluster_that_is_down_does_not_stop_the_others(environment, cluster):
    down = Cluster.objects.create(
        name="down",
        connection=Cluster.Connection.KUBECONFIG,
        kubeconfig=_unreachable_kubeconfig(),
    )
    from tests.factories import make_environment

    other = make_environment(environment.project, by=environment.created_by, name="elsewhere")
    Environment.objects.filter(pk=other.pk).update(cluster=down)
    manager = WatchManager(refresh_interval=3600, flush_interval=0.05, watch_timeout=10, backoff_cap=1.0)
    try:
        manager.refresh()
        assert set(manager.watchers) == {cluster.pk, down.pk}
        service = make_service(environment, "web", "nginx:1.27")
        deploy(service)
        wait_for(lambda: row(service)[0] == "running", "web running on the healthy cluster")
        assert not manager.watchers[down.pk].synced
        assert any(w.failures for w in manager.watchers[down.pk].watchers)
    finally:
        started = time.monotonic()
        manager.stop_all()
        assert time.monotonic() - started < 3


def _unreachable_kubeconfig() -> str:
    """A kubeconfig pointing at a local port nothing listens on."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    text = f"""apiVersion: v1
kind: Config
clusters:
- name: down
  cluster: {{server: "http://127.0.0.1:{port}"}}
users:
- name: down
  user: {{token: "x"}}
contexts:
- name: down
  context: {{cluster: down, user: down}}
current-context: down
"""
    return text


def test_the_command_stops_on_sigterm_within_seconds(environment, cluster):
    # The handler is installed by the command, in this (main) thread; the signal comes from a
    # timer once the watchers are up.
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    sent_at: list[float] = []

    def send() -> None:
        sent_at.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGTERM)

    timer = threading.Timer(2.0, send)
    timer.start()
    try:
        call_command("watch_clusters", refresh_interval=3600)
        stopped_in = time.monotonic() - sent_at[0]
    finally:
        timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert stopped_in < 3
    assert not [t for t in threading.enumerate() if t.name.startswith(("watch-dev/", "write-dev"))]


@pytest.fixture
def redis_layer(settings):
    """A real channels_redis layer under a prefix of its own, so runs never see each other."""
    import uuid

    import redis

    prefix = f"ale-test-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": prefix},
        }
    }
    yield
    # Not the layer's flush(): the watcher's thread may still be closing its own event loop's
    # connections, which that method iterates.
    with redis.Redis.from_url(settings.REDIS_URL) as connection:
        keys = list(connection.scan_iter(f"{prefix}*"))
        if keys:
            connection.delete(*keys)


async def test_a_member_sees_the_card_change_live(redis_layer, member, environment, watcher):
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from ale_site.asgi import application

    def cookie() -> bytes:
        client = Client()
        client.force_login(member)
        return f"sessionid={client.cookies['sessionid'].value}".encode()

    communicator = WebsocketCommunicator(
        application,
        f"/ws/environments/{environment.public_id}/",
        headers=[(b"host", b"localhost"), (b"origin", b"http://localhost"), (b"cookie", await sync_to_async(cookie)())],
    )
    assert (await communicator.connect())[0]
    service = await sync_to_async(make_service)(environment, "web", "nginx:1.27")

    await sync_to_async(deploy)(service)

    # Each status the card goes through arrives as the card itself, to be swapped by its id;
    # the Events tab's new rows come along, each alone (never the whole list).
    cards, others = [], []
    deadline = time.monotonic() + TIMEOUT
    while not (cards and ">Running<" in cards[-1]) and time.monotonic() < deadline:
        message = await communicator.receive_from(timeout=TIMEOUT)
        card = f'<article class="card service-card" id="service-{service.public_id}"'
        if card in message:
            cards.append(message[message.index(card) :].split("</article>", 1)[0])
        others.append(message.replace(cards[-1], "") if card in message else message)
    assert ">Running<" in cards[-1]
    assert not any('id="event-list"' in message for message in others)
    assert await sync_to_async(row)(service) == ("running", "", 1)
    await communicator.disconnect()
