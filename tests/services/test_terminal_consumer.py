"""The terminal socket against real exec sessions (a shell in a pty) on the devcluster."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlparse

import pytest
from asgiref.sync import sync_to_async

from clusters.client import client_for
from environments.models import Environment
from services import consumers
from services.models import TerminalSession
from services.streams.exec_bridge import ExecBridge
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
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("streams_cleaned_up"),
]


@pytest.fixture
def env(kube_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="term", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    yield environment
    delete_namespace(environment)


@pytest.fixture
def service(env):
    return run_service(env, image="python:3.12")


def terminal_path(service, **query: str) -> str:
    qs = "&".join(f"{key}={value}" for key, value in query.items())
    return f"/ws/services/{service.public_id}/terminal/" + (f"?{qs}" if qs else "")


async def open_terminal(service, user, **query: str):
    communicator = await socket(terminal_path(service, **query), user=user)
    connected, _ = await communicator.connect()
    assert connected
    status = await receive_json(communicator)
    assert status["t"] == "status" and status["state"] == "connecting", status
    opened = await receive_json(communicator, timeout=10)
    assert opened == {"t": "status", "state": "open", "pod": status["pod"], "container": status["container"]}
    return communicator, status


async def type_line(communicator, line: str) -> None:
    await communicator.send_to(text_data=json.dumps({"t": "in", "d": line + "\r"}))


async def read_until(communicator, needle: str, timeout: float = 10, *, received: int = 0) -> str:
    """Terminal output (binary frames) until `needle` appears; acknowledges as xterm.js does
    (`received`: the bytes this socket already brought)."""
    output = ""
    deadline = time.monotonic() + timeout
    while needle not in output:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{needle!r} not in the output within {timeout} s: {output[-500:]!r}")
        frame = await communicator.receive_output(timeout=remaining)
        if frame["type"] == "websocket.close":
            raise AssertionError(f"closed ({frame.get('code')}) before {needle!r}: {output[-500:]!r}")
        if frame.get("bytes") is not None:
            received += len(frame["bytes"])
            output += frame["bytes"].decode("utf-8", "replace")
            await communicator.send_to(text_data=json.dumps({"t": "ack", "seq": received}))
    return output


async def test_it_runs_what_is_typed_and_shows_the_output(service, member):
    communicator, status = await open_terminal(service, member)
    assert status["container"] == "app" and status["pods"][0]["name"] == status["pod"]
    await type_line(communicator, "echo ale-$((6*7))")
    # The product, not the typed expression's echo: the shell ran it.
    await read_until(communicator, "ale-42")
    await communicator.disconnect()


async def test_a_resize_reaches_the_pty(service, member):
    communicator, _ = await open_terminal(service, member, cols="90", rows="30")
    await type_line(communicator, "stty size")
    await read_until(communicator, "30 90")
    await communicator.send_to(text_data=json.dumps({"t": "resize", "cols": 132, "rows": 43}))
    await type_line(communicator, "stty size")
    await read_until(communicator, "43 132")
    await communicator.disconnect()


async def test_ctrl_c_interrupts_the_running_program(service, member):
    communicator, _ = await open_terminal(service, member)
    await type_line(communicator, "sleep 30; echo not-interrupted")
    await asyncio.sleep(0.5)
    started = time.monotonic()
    await communicator.send_to(text_data=json.dumps({"t": "in", "d": "\x03"}))
    await type_line(communicator, "echo after-$((1+1))")
    output = await read_until(communicator, "after-2")
    assert time.monotonic() - started < 5 and "not-interrupted" not in output.replace("echo not-interrupted", "")
    await communicator.disconnect()


async def test_the_shell_exiting_closes_the_socket_with_its_status_and_records_the_session(service, member):
    communicator, status = await open_terminal(service, member)
    await type_line(communicator, "exit 3")
    message, _ = await until_json(communicator, lambda m: m.get("t") == "exit")
    assert message["code"] == 3
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed.get("code") == 1000

    record = await sync_to_async(TerminalSession.objects.get)(service=service)
    assert (record.user_id, record.username, record.pod, record.container) == (
        member.pk, "member", status["pod"], "app"
    )
    assert record.closed_at is not None and record.closed_at >= record.opened_at
    assert (record.close_reason, record.exit_code) == ("exited", 3)


async def until_json(communicator, predicate, timeout: float = 10):
    """Like `until`, skipping binary output frames."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await communicator.receive_output(timeout=max(0.01, deadline - time.monotonic()))
        assert frame["type"] == "websocket.send", frame
        if frame.get("text") is not None:
            message = json.loads(frame["text"])
            if predicate(message):
                return message, frame


async def test_leaving_closes_the_exec_session_and_leaves_nothing_behind(service, member, kube_cluster):
    port = urlparse((await sync_to_async(client_for)(kube_cluster)).configuration.host).port
    # Streams of earlier tests may still be ending: given time to, and then not counted.
    await settles(lambda: not stream_threads(), timeout=10)
    others = set(stream_threads())

    def ours() -> list[str]:
        return [thread.name for thread in stream_threads() if thread not in others]

    communicator, _ = await open_terminal(service, member)
    await communicator.disconnect()
    assert await settles(lambda: not ours(), timeout=10), ours()
    connections_before = connections_to(port)

    communicator, _ = await open_terminal(service, member)
    await type_line(communicator, "echo still-$((2+2))")
    await read_until(communicator, "still-4")
    assert {name.split("-")[2] for name in ours()} >= {"read", "write"}
    assert connections_to(port) == connections_before + 1
    await communicator.disconnect()

    assert await settles(lambda: not ours(), timeout=10), ours()
    assert await settles(lambda: connections_to(port) <= connections_before)
    record = await sync_to_async(TerminalSession.objects.filter(service=service).latest)("opened_at")
    assert record.close_reason == "client" and record.closed_at is not None


async def test_an_idle_terminal_is_closed_with_a_message(service, member, settings):
    settings.TERMINAL_IDLE_TIMEOUT = 1
    communicator, _ = await open_terminal(service, member)
    message, _ = await until_json(communicator, lambda m: m.get("t") == "closed", timeout=5)
    assert message["reason"] == "idle" and "without input" in message["message"]
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4408
    record = await sync_to_async(TerminalSession.objects.get)(service=service)
    assert record.close_reason == "idle"


async def test_output_waits_for_acknowledgements_and_nothing_is_lost(service, member):
    communicator, _ = await open_terminal(service, member)
    await type_line(communicator, "stty -echo; yes | head -c 1000000; echo; echo end-$((3*3))")
    received = b""
    # Until the output stops: a pause this long is the server waiting for an acknowledgement.
    while await communicator.receive_nothing(timeout=2) is False:
        frame = await communicator.receive_output(timeout=1)
        received += frame.get("bytes") or b""
    # Unacknowledged, the server stops past its high watermark (100 kB) plus at most one frame.
    assert 100_000 < len(received) < 400_000
    await communicator.send_to(text_data=json.dumps({"t": "ack", "seq": len(received)}))
    rest = await read_until(communicator, "end-9", timeout=20, received=len(received))
    assert (received.decode() + rest).count("y\r\n") == 500_000
    await communicator.disconnect()


async def test_it_ignores_garbage_and_closes_on_a_huge_message(service, member):
    communicator, _ = await open_terminal(service, member)
    for garbage in ("nope", "[]", '{"t":"exec","cmd":"rm -rf /"}', '{"t":"resize","cols":-1,"rows":1e9}', '{"t":"in","d":5}'):
        await communicator.send_to(text_data=garbage)
    await type_line(communicator, "echo alive-$((5+5))")
    await read_until(communicator, "alive-10")
    await communicator.send_to(text_data=json.dumps({"t": "in", "d": "x" * 300_000}))
    message, _ = await until_json(communicator, lambda m: m.get("t") == "error")
    assert "over 256 KiB" in message["message"]
    closed = await communicator.receive_output(timeout=5)
    # An application's code (Daphne refuses 1009), with the reason the page shows.
    assert closed["type"] == "websocket.close" and closed["code"] == 4413, closed
    assert closed["reason"] == message["message"]
    record = await session_closed(service)
    assert record is not None and record.close_reason == "error"


async def session_closed(service, timeout: float = 10) -> TerminalSession | None:
    """The service's terminal session once it has been closed (the server closes the socket
    first, then ends the shell and records the session)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = await sync_to_async(TerminalSession.objects.filter(service=service).latest)("opened_at")
        if record.closed_at is not None:
            return record
        await asyncio.sleep(0.1)
    return None


async def test_a_failing_handler_closes_the_socket_and_ends_the_shell(service, member, monkeypatch):
    await settles(lambda: not stream_threads(), timeout=10)
    others = set(stream_threads())
    communicator, _ = await open_terminal(service, member)
    await type_line(communicator, "echo up-$((1+2))")
    await read_until(communicator, "up-3")

    def broken(self, data):
        raise RuntimeError("a bug in the input handler")

    # A bug standing in for any exception inside a handler: the input handler hands the keys to
    # the session's bridge.
    monkeypatch.setattr(ExecBridge, "write", broken)
    await type_line(communicator, "echo never")
    message, _ = await until_json(communicator, lambda m: m.get("t") == "error")
    assert message["message"] == "Something went wrong on the server; the connection was closed."
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4500, closed

    assert await settles(lambda: not [t for t in stream_threads() if t not in others], timeout=10), stream_threads()
    record = await session_closed(service)
    assert record is not None and record.close_reason == "error"


async def test_a_failing_background_task_closes_the_socket(service, member, monkeypatch):
    def broken(kube, service):
        raise RuntimeError("a bug while listing pods")

    # The consumer's background task lists the pods through this name of its module.
    monkeypatch.setattr(consumers, "list_service_pods", broken)
    communicator = await socket(terminal_path(service), user=member)
    assert (await communicator.connect())[0]
    message = await receive_json(communicator)
    assert message == {"t": "error", "message": "Something went wrong on the server; the connection was closed."}
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4500, closed


async def test_it_refuses_an_anonymous_visitor_an_outsider_and_a_foreign_origin(service, member, outsider):
    for user, origin in ((None, None), (outsider, None), (member, (b"origin", b"https://evil.example"))):
        kwargs = {"origin": origin} if origin else {}
        communicator = await socket(terminal_path(service), user=user, **kwargs)
        assert not (await communicator.connect())[0]


async def test_owners_only_refuses_members_and_admits_owners(service, env, member, owner):
    env.terminal_access = Environment.TerminalAccess.OWNERS_ONLY
    await sync_to_async(env.save)(update_fields=["terminal_access"])
    communicator = await socket(terminal_path(service), user=member)
    assert not (await communicator.connect())[0]
    communicator, _ = await open_terminal(service, owner)
    await communicator.disconnect()
    assert not await sync_to_async(TerminalSession.objects.filter(user=member).exists)()


async def test_it_opens_only_pods_of_the_service(service, env, member):
    other = await sync_to_async(run_service)(env, name="other", image="python:3.12")
    other_pod = (await sync_to_async(pods_of)(other))[0]["metadata"]["name"]
    communicator = await socket(terminal_path(service, pod=other_pod), user=member)
    assert (await communicator.connect())[0]
    message = await receive_json(communicator)
    assert message["t"] == "error"
    closed = await communicator.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4404
