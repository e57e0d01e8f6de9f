"""The log socket against real pod logs on the devcluster, through the real ASGI application."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urlparse

import pytest
from asgiref.sync import sync_to_async

from django.utils import timezone

from clusters.client import client_for
from environments.manifests import render_environment
from services import consumers
from services.consumers import LogConsumer
from services.manifests import render_service
from services.models import Service
from services.streams.escaping import LineSplitter
from services.streams.pods import short_pod_name
from services.streams.timestamps import split_stamp
from spaces.actions import create_project
from tests.services.stream_helpers import (
    connections_to,
    delete_namespace,
    pods_of,
    receive_json,
    run_service,
    settles,
    socket,
    stream_threads,
    until,
    wait_for,
)

# serialized_rollback: the seeded `local` cluster must survive the flush after each test; a
# transactional database because the consumer reads it from other threads.
pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("streams_cleaned_up"),
]

SEQ = re.compile(r"loggen seq=(\d+)")


@pytest.fixture
def env(kube_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="logs", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    yield environment
    delete_namespace(environment)


def logs_path(service, **query: str) -> str:
    qs = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/ws/services/{service.public_id}/logs/" + (f"?{qs}" if qs else "")


def seqs(message: dict) -> list[int]:
    return [int(m.group(1)) for line in message["lines"] if (m := SEQ.search(line))]


def texts(message: dict) -> list[str]:
    return [split_stamp(line)[1] for line in message["lines"]]


async def collect_lines(communicator, count: int, *, timeout: float = 10, ack: bool = True) -> list[dict]:
    """Line messages until `count` lines arrived, acknowledging as the browser does."""
    got: list[dict] = []
    total = 0
    while total < count:
        message, _ = await until(communicator, lambda m: m["t"] == "lines", timeout)
        got.append(message)
        total += len(message["lines"])
        if ack:
            await communicator.send_to(text_data=json.dumps({"t": "ack", "seq": message["seq"]}))
    return got


async def test_it_follows_a_pod_and_new_lines_keep_arriving(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "50"})
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    assert hello["t"] == "hello" and hello["pod"] == hello["pods"][0]["name"] and hello["container"] == "app"

    first = await collect_lines(communicator, 5)
    latest = max(seq for message in first for seq in seqs(message))
    later = await collect_lines(communicator, 10)
    assert max(seq for message in later for seq in seqs(message)) > latest
    # Every line carries the cluster's timestamp, whether or not the viewer shows it.
    assert all(re.match(r"\d{4}-\d\d-\d\dT\S+Z loggen seq=", line) for message in later for line in message["lines"])
    await communicator.disconnect()


async def test_it_tails_the_last_lines_asked_for(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "2000", "LOG_COUNT": "300"})
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)
    await asyncio.sleep(0.5)  # the 300 lines take 0.15 s to be written
    await communicator.disconnect()

    communicator = await socket(logs_path(service, tail="50"), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)
    messages = await collect_lines(communicator, 50)
    assert [seq for message in messages for seq in seqs(message)] == list(range(250, 300))
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_it_shows_the_previous_container_of_a_crashing_pod(env, member):
    service = await sync_to_async(run_service)(env, image="crash-app:1")
    await sync_to_async(wait_for)(
        lambda: any(
            s.get("restartCount", 0) >= 1 for p in pods_of(service) for s in p["status"].get("containerStatuses") or []
        ),
        what="a restart",
    )
    communicator = await socket(logs_path(service, previous="1"), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    assert hello["previous"] is True
    # The page offers the previous container when the one it shows has restarted.
    assert hello["pods"][0]["restarts"]["app"] >= 1
    message, _ = await until(communicator, lambda m: m["t"] == "lines")
    lines = texts(message)
    ended, _ = await until(communicator, lambda m: m["t"] == "status" and m["state"] == "ended")
    while not any("ConnectionError: could not connect" in text for text in lines):
        message, _ = await until(communicator, lambda m: m["t"] == "lines")
        lines += texts(message)
    assert any("starting" in text for text in lines)
    await communicator.disconnect()


async def test_it_reads_the_container_asked_for(env, member):
    sidecar = {"name": "shipper", "image": "loggen:2", "env": [{"name": "LOG_RATE", "value": "20"}]}
    service = await sync_to_async(run_service)(env, image="nginx:1.27", sidecars=[sidecar])

    communicator = await socket(logs_path(service, container="shipper"), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    assert hello["container"] == "shipper" and hello["pods"][0]["containers"] == ["app", "shipper"]
    message, _ = await until(communicator, lambda m: m["t"] == "lines")
    assert all(text.startswith("loggen seq=") for text in texts(message))
    await communicator.disconnect()

    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    assert (await receive_json(communicator))["container"] == "app"
    message, _ = await until(communicator, lambda m: m["t"] == "lines")
    assert "docker-entrypoint" in texts(message)[0]
    assert not any("loggen" in text for text in texts(message))
    await communicator.disconnect()


async def test_all_pods_mode_labels_every_line_with_its_pod(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "20"}, replicas=2)
    communicator = await socket(logs_path(service, pod="*"), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    names = {pod["name"] for pod in hello["pods"]}
    assert hello["pod"] == "*" and len(names) == 2

    seen: set[str] = set()
    while seen != names:
        message, _ = await until(communicator, lambda m: m["t"] == "lines")
        assert message["pod"] in names
        # loggen prints its own pod name: each batch holds the lines of the pod it is labelled with.
        assert all(f"pod={message['pod']}" in text for text in texts(message))
        seen.add(message["pod"])
    assert len({short_pod_name(name) for name in names}) == 2
    await communicator.disconnect()


async def test_it_resumes_after_a_timestamp_without_repeating_lines(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "100"})
    communicator = await socket(logs_path(service, tail="20"), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)
    first = await collect_lines(communicator, 20)
    last_ts, last_text = split_stamp(first[-1]["lines"][-1])
    await communicator.disconnect()

    # What the page does after a network blip: reconnect asking for what follows its last line.
    communicator = await socket(logs_path(service, tail="20", since=last_ts), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)
    message, _ = await until(communicator, lambda m: m["t"] == "lines")
    assert seqs(message)[0] == int(SEQ.search(last_text).group(1)) + 1
    await communicator.disconnect()


async def test_it_stops_reading_while_the_browser_is_behind_and_loses_nothing(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "100000", "LOG_COUNT": "60000"})
    communicator = await socket(logs_path(service, tail="all"), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)

    # No acknowledgement: the server sends up to its high watermark, then nothing.
    unacked: list[dict] = []
    while await communicator.receive_nothing(timeout=0.5) is False:
        message = await receive_json(communicator)
        if message["t"] == "lines":
            unacked.append(message)
    sent = unacked[-1]["seq"]
    assert 4 * 1024 * 1024 <= sent < 5 * 1024 * 1024
    received = [seq for message in unacked for seq in seqs(message)]
    assert len(received) < 60000

    # Acknowledged, it resumes where it stopped and every line arrives, once and in order.
    await communicator.send_to(text_data=json.dumps({"t": "ack", "seq": sent}))
    rest = await collect_lines(communicator, 60000 - len(received), timeout=20)
    received += [seq for message in rest for seq in seqs(message)]
    assert received == list(range(60000))
    await communicator.disconnect()


def redeploy(service) -> None:
    """What the reconcile task applies for a redeploy: the same spec with a new pod template."""
    service.redeployed_at = timezone.now()
    service.save(update_fields=["redeployed_at"])
    client_for(service.environment.cluster).apply(render_service(service))


async def test_newest_pod_moves_to_the_new_pod_after_a_redeploy_with_a_marker(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "20"})
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    old = hello["pod"]
    await collect_lines(communicator, 5)

    await sync_to_async(redeploy)(service)
    # The view moves on to the new pod by itself, and the page's pod list learns of it.
    marker, before = await until(communicator, lambda m: m["t"] == "marker", 30)
    new = marker["pod"]
    assert marker["kind"] == "pod" and new != old
    assert re.fullmatch(
        rf"── Now following pod {new} · revision 2 · started \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC ──", marker["text"]
    ), marker["text"]
    # Every line before the marker is the old pod's, every line after it the new one's.
    assert all(f"pod={old}" in text for m in before if m["t"] == "lines" for text in texts(m))
    after = await collect_lines(communicator, 5, timeout=15)
    assert all(f"pod={new}" in text for m in after for text in texts(m))
    listed = [m for m in before if m["t"] == "pods"]
    assert new in [pod["name"] for pod in listed[0]["pods"]]
    assert any(m["pod"] == new and [pod["name"] for pod in m["pods"]] == [new] for m in listed)
    await communicator.disconnect()


async def test_it_marks_a_crash_restart_and_goes_on_with_the_new_container(env, member):
    service = await sync_to_async(run_service)(env, image="crash-app:1")
    communicator = await socket(logs_path(service, tail="all"), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    marker, before = await until(communicator, lambda m: m["t"] == "marker", 30)
    assert marker["kind"] == "restart" and marker["pod"] == hello["pod"]
    assert re.fullmatch(
        rf"── Container app restarted \(restart \d+\) · pod {hello['pod']} · revision 1 · started \S+ \S+ UTC ──",
        marker["text"],
    ), marker["text"]
    # The crashed container's traceback came before the marker, the new one's start after it.
    assert any("ConnectionError: could not connect" in text for m in before if m["t"] == "lines" for text in texts(m))
    message, _ = await until(communicator, lambda m: m["t"] == "lines", 15)
    assert "starting crash-app" in texts(message)[0]
    await communicator.disconnect()


async def test_all_pods_mode_tells_the_page_when_a_pod_joins(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "5"})
    communicator = await socket(logs_path(service, pod="*"), user=member)
    assert (await communicator.connect())[0]
    hello = await receive_json(communicator)
    assert hello["container"] == "app" and len(hello["pods"]) == 1

    kube = await sync_to_async(client_for)(env.cluster)
    await sync_to_async(kube.scale)(service.namespace, service.name, 2)
    listed, _ = await until(communicator, lambda m: m["t"] == "pods" and len(m["pods"]) == 2, 30)
    # The page keeps showing every pod, and the container it shows.
    assert listed["pod"] == "*" and listed["container"] == "app"
    await communicator.disconnect()


def apply_without_waiting(environment, image: str) -> Service:
    service = Service.objects.create(environment=environment, name="app", image=image, port=8080)
    client_for(environment.cluster).apply(render_environment(environment) + render_service(service))
    wait_for(lambda: pods_of(service), what="a pod")
    return service


async def test_it_waits_for_a_container_that_has_not_started_instead_of_failing(env, member):
    service = await sync_to_async(apply_without_waiting)(env, "registry.example/does-not-exist:1")
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)
    waiting, seen = await until(communicator, lambda m: m["t"] == "status" and m["state"] != "streaming", 15)
    assert waiting["state"] == "waiting", waiting
    assert "is waiting to start" in waiting["message"]
    # It keeps looking: again a waiting status, never an error or an end.
    again, seen = await until(communicator, lambda m: m["t"] == "status", 15)
    assert again["state"] == "waiting"
    assert not [m for m in seen if m["t"] == "status" and m["state"] in ("error", "ended")]
    await communicator.disconnect()


def log_tasks() -> list[asyncio.Task]:
    return [task for task in asyncio.all_tasks() if task.get_name().startswith("ale-log-") and not task.done()]


async def test_closing_the_socket_closes_the_stream_and_leaves_nothing_behind(env, member, kube_cluster):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "50"}, replicas=2)
    port = urlparse((await sync_to_async(client_for)(kube_cluster)).configuration.host).port
    # Warm up the shared client's pool, so that only the streams' connections are counted.
    communicator = await socket(logs_path(service, pod="*", tail="1"), user=member)
    assert (await communicator.connect())[0]
    await collect_lines(communicator, 2)
    await communicator.disconnect()
    # Streams of earlier tests may still be ending: given time to, and then not counted.
    await settles(lambda: not stream_threads(), timeout=10)
    threads_before, connections_before = set(stream_threads()), connections_to(port)

    communicator = await socket(logs_path(service, pod="*"), user=member)
    assert (await communicator.connect())[0]
    await collect_lines(communicator, 10)
    # Both pods are followed by tasks of the loop, each on a connection of its own: no thread.
    assert len(log_tasks()) == 2
    assert connections_to(port) == connections_before + 2
    assert not [thread.name for thread in stream_threads() if thread not in threads_before and "-log-" in thread.name]
    await communicator.disconnect()

    assert not log_tasks()
    assert await settles(lambda: connections_to(port) <= connections_before)


async def test_it_refuses_an_anonymous_visitor(env):
    service = await sync_to_async(run_service)(env)
    communicator = await socket(logs_path(service))
    connected, _ = await communicator.connect()
    assert not connected


async def test_it_refuses_an_outsider_as_if_the_service_did_not_exist(env, outsider):
    service = await sync_to_async(run_service)(env)
    communicator = await socket(logs_path(service), user=outsider)
    assert not (await communicator.connect())[0]
    communicator = await socket("/ws/services/nosuchservice/logs/", user=outsider)
    assert not (await communicator.connect())[0]


async def test_it_refuses_a_foreign_origin(env, member):
    service = await sync_to_async(run_service)(env)
    communicator = await socket(logs_path(service), user=member, origin=(b"origin", b"https://evil.example"))
    assert not (await communicator.connect())[0]


async def test_it_reads_only_pods_of_the_service(env, member):
    service = await sync_to_async(run_service)(env)
    other = await sync_to_async(run_service)(env, name="other")
    other_pod = (await sync_to_async(pods_of)(other))[0]
    communicator = await socket(logs_path(service, pod=other_pod["metadata"]["name"]), user=member)
    assert (await communicator.connect())[0]
    message = await receive_json(communicator)
    assert message["t"] == "status" and message["state"] == "error"
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"


async def test_it_ignores_garbage_and_closes_on_a_huge_message(env, member):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "20"})
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    await receive_json(communicator)
    for garbage in ("not json", "[1,2]", '{"t":"shutdown"}', '{"t":"ack","seq":"all"}', '{"t":"ack","seq":1e99}'):
        await communicator.send_to(text_data=garbage)
    await communicator.send_to(text_data='{"t":"ping"}')
    pong, _ = await until(communicator, lambda m: m["t"] == "pong")
    assert pong == {"t": "pong"}
    await communicator.send_to(text_data="x" * 100_000)
    message, _ = await until(communicator, lambda m: m["t"] == "status" and m["state"] == "error")
    assert message["message"] == "A message from the page was over 4 KiB; the connection was closed."
    closed = await communicator.receive_output(timeout=5)
    # An application's code (Daphne refuses 1009), with the reason the page shows.
    assert closed["type"] == "websocket.close" and closed["code"] == 4413, closed


async def test_a_failing_handler_closes_the_socket_and_the_stream(env, member, kube_cluster, monkeypatch):
    service = await sync_to_async(run_service)(env, env={"LOG_RATE": "20"})
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    await collect_lines(communicator, 2)
    assert len(log_tasks()) == 1

    def broken(self, seq):
        raise RuntimeError("a bug in the ack handler")

    # A bug standing in for any exception inside a handler.
    monkeypatch.setattr(LogConsumer, "acknowledge", broken)
    await communicator.send_to(text_data='{"t":"ack","seq":1}')
    message, _ = await until(communicator, lambda m: m["t"] == "status" and m["state"] == "error")
    assert message["message"] == "Something went wrong on the server; the connection was closed."
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4500, closed
    assert await settles(lambda: not log_tasks()), log_tasks()


async def test_a_failing_background_task_closes_the_socket(env, member, monkeypatch):
    service = await sync_to_async(run_service)(env)

    def broken(kube, service):
        raise RuntimeError("a bug while listing the pods")

    # The consumer's background task lists the pods through this name of its module.
    monkeypatch.setattr(consumers, "list_service_pods", broken)
    communicator = await socket(logs_path(service), user=member)
    assert (await communicator.connect())[0]
    message, _ = await until(communicator, lambda m: m["t"] == "status" and m["state"] == "error")
    assert message["message"] == "Something went wrong on the server; the connection was closed."
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4500, closed


@pytest.mark.parametrize(
    "block",
    [
        b'2024-05-01T10:00:00Z plain "quoted" back\\slash\ttab\n2024-05-01T10:00:01Z next',
        "2024-05-01T10:00:00Z caf\u00e9 \u2028 ok\n\n2024-05-01T10:00:01Z last".encode(),
        b"2024-05-01T10:00:00Z \x1b[31mred\x1b[0m \x1b]0;title\x07\n2024-05-01T10:00:01Z 10%\r100%",
        b"2024-05-01T10:00:00Z \xff\xfe broken \xe2\x80\xae bidi",
        b"2024-05-01T10:00:00Z " + b"x" * 20000,
        # Many short lines, then one just under and one just over the length a line is cut at.
        b"\n".join(b'2024-05-01T10:00:00Z seq=%d "q" \\ \t' % i for i in range(3000)),
        b"2024-05-01T10:00:00Z a\n" * 500 + b"2024-05-01T10:00:01Z " + b"y" * 16_400 + b"\n2024-05-01T10:00:02Z b",
        b"2024-05-01T10:00:00Z a\n" * 500 + b"2024-05-01T10:00:01Z " + b"y" * 16_500 + b"\n2024-05-01T10:00:02Z b",
        b"",
    ],
)
def test_the_encoded_lines_of_a_block_are_the_json_of_its_sanitised_lines(block):
    splitter = LineSplitter()
    payload, count, stamp = splitter.encode(block)
    lines = splitter.lines(block)
    assert json.loads(f"[{payload}]") == lines and count == len(lines)
    assert stamp == split_stamp(lines[-1])[0]
