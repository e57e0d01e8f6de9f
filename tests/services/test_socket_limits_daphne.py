"""Oversized frames through the real ASGI server: Daphne, in a process of its own, on the test
database, with a websocket client as a browser's.

The in-process communicator accepts any close code; Daphne lets an application send only 1000
and 3000-4999, and turns anything else into an exception, a 1011 for the browser and a consumer
whose disconnect never runs. So these run against Daphne itself and look at what the server
process and the devcluster hold afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlparse

import psutil
import pytest
import websocket
from django.db import connection

from ale_site.localstack import free_port
from clusters.client import client_for
from services.models import TerminalSession
from spaces.actions import create_project
from tests.services.stream_helpers import delete_namespace, run_service, session_cookie
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Daphne:
    port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def threads(self) -> int:
        return psutil.Process(self.process.pid).num_threads()

    def connections_to(self, port: int) -> int:
        return sum(
            1
            for conn in psutil.Process(self.process.pid).net_connections(kind="tcp")
            if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
        )


def database_url() -> str:
    """The test database as a DATABASE_URL, for a server process of its own."""
    params = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{params['NAME']}"
    user = quote(params.get("USER") or "")
    password = f":{quote(params['PASSWORD'])}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = f":{params['PORT']}" if params.get("PORT") else ""
    return f"postgres://{user}{password}@{host}{port}/{params['NAME']}"


@pytest.fixture
def daphne(transactional_db, tmp_path: Path) -> Iterator[Daphne]:
    port = free_port()
    log_path = tmp_path / "daphne.log"
    env = {**os.environ, "DATABASE_URL": database_url(), "DEBUG": "true", "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ale_site.asgi:application"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = Daphne(port, process, log_path)

    def serving() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"daphne exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    try:
        wait_for(serving, timeout=30, what="daphne serving /login/")
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


@pytest.fixture
def env(kube_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="limits", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    yield environment
    delete_namespace(environment)


def cluster_port(cluster) -> int:
    return urlparse(client_for(cluster).configuration.host).port


def open_socket(server: Daphne, path: str, user) -> websocket.WebSocket:
    origin = f"http://127.0.0.1:{server.port}"
    return websocket.create_connection(
        f"ws://127.0.0.1:{server.port}{path}",
        header=[f"Cookie: {session_cookie(user).decode()}"],
        origin=origin,
        timeout=10,
    )


def next_frame(ws: websocket.WebSocket) -> tuple[str, object]:
    """("text", message), ("bytes", data) or ("close", (code, reason))."""
    opcode, frame = ws.recv_data_frame(control_frame=True)
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        data = frame.data or b""
        code = int.from_bytes(data[:2], "big") if len(data) >= 2 else None
        return "close", (code, data[2:].decode(errors="replace"))
    if opcode == websocket.ABNF.OPCODE_TEXT:
        return "text", json.loads(frame.data)
    if opcode == websocket.ABNF.OPCODE_BINARY:
        return "bytes", frame.data
    return "control", None


def read_until_closed(ws: websocket.WebSocket, timeout: float = 15) -> tuple[int | None, list[dict]]:
    """Every message until the server's close; returns the close code and the messages."""
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kind, value = next_frame(ws)
        if kind == "close":
            return value[0], messages
        if kind == "text":
            messages.append(value)
    raise AssertionError(f"the server did not close the socket within {timeout} s: {messages[-5:]}")


def terminal_output_until(ws: websocket.WebSocket, pattern: str, timeout: float = 15) -> re.Match:
    output = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kind, value = next_frame(ws)
        if kind == "bytes":
            output += value.decode(errors="replace")
            if match := re.search(pattern, output):
                return match
        elif kind == "close":
            raise AssertionError(f"closed {value} before {pattern!r}: {output[-300:]!r}")
    raise AssertionError(f"{pattern!r} not in the terminal output within {timeout} s: {output[-300:]!r}")


def open_terminal(server: Daphne, service, user) -> tuple[websocket.WebSocket, int]:
    """A terminal on the service's pod, open; returns the socket and the shell's process id."""
    ws = open_socket(server, f"/ws/services/{service.public_id}/terminal/?cols=80&rows=24", user)
    while True:
        kind, value = next_frame(ws)
        assert kind == "text", (kind, value)
        if value.get("t") == "status" and value.get("state") == "open":
            break
        assert value.get("t") == "status", value
    ws.send(json.dumps({"t": "in", "d": "echo shell-pid-$$\r"}))
    # The expanded number, not the typed `$$`: the shell's own process (the devcluster runs it).
    return ws, int(terminal_output_until(ws, r"shell-pid-(\d+)").group(1))


def shell_gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_an_oversized_terminal_input_closes_with_4413_and_ends_the_shell(daphne, env, member):
    service = run_service(env, image="python:3.12")
    kube_port = cluster_port(env.cluster)

    # Once normally, so that what the server keeps for good (its database thread, its client's
    # pooled connection) is there before the counts are taken.
    ws, pid = open_terminal(daphne, service, member)
    ws.close()
    wait_for(lambda: shell_gone(pid), timeout=15, what="the first shell ending when its page left")
    threads_before = wait_for(lambda: daphne.threads(), what="daphne's thread count")
    connections_before = daphne.connections_to(kube_port)

    ws, pid = open_terminal(daphne, service, member)
    # The exec session: a reader and a writer thread, and its own connection to the cluster.
    assert daphne.threads() >= threads_before + 2
    assert daphne.connections_to(kube_port) == connections_before + 1
    ws.send(json.dumps({"t": "in", "d": "x" * 300_000}))
    code, messages = read_until_closed(ws)
    ws.close()

    assert code == 4413, f"closed with {code}; daphne's log:\n{daphne.log()}"
    assert {"t": "error", "message": "The input was over 256 KiB at once; the terminal was closed."} in messages
    wait_for(lambda: shell_gone(pid), timeout=15, what="the shell in the devcluster ending")
    wait_for(
        lambda: daphne.threads() <= threads_before,
        timeout=15,
        what=f"daphne's exec threads ending (threads: {daphne.threads()}, before: {threads_before})",
    )
    wait_for(lambda: daphne.connections_to(kube_port) <= connections_before, timeout=15, what="the exec connection closing")
    # The session's row is closed by the same teardown, in a database thread of its own: it may
    # land a moment after the threads and the connection are gone.
    wait_for(
        lambda: TerminalSession.objects.filter(service=service).latest("opened_at").closed_at is not None,
        timeout=15,
        what="the terminal session recorded as closed",
    )
    record = TerminalSession.objects.filter(service=service).latest("opened_at")
    assert record.close_reason == "error"
    assert "Exception inside application" not in daphne.log()


def test_an_oversized_log_message_closes_with_4413_and_the_log_stream(daphne, env, member):
    service = run_service(env, env={"LOG_RATE": "20"})
    kube_port = cluster_port(env.cluster)
    path = f"/ws/services/{service.public_id}/logs/"

    def first_lines(ws: websocket.WebSocket) -> None:
        while True:
            kind, value = next_frame(ws)
            assert kind == "text", (kind, value)
            if value["t"] == "lines":
                return

    # Once normally, so that the server's pooled connection to the cluster is there already.
    ws = open_socket(daphne, path, member)
    first_lines(ws)
    ws.close()
    wait_for(lambda: daphne.connections_to(kube_port) <= 1, timeout=15, what="the first log stream closing")
    connections_before = daphne.connections_to(kube_port)

    ws = open_socket(daphne, path, member)
    first_lines(ws)
    assert daphne.connections_to(kube_port) == connections_before + 1
    ws.send("x" * 5000)
    code, messages = read_until_closed(ws)
    ws.close()

    assert code == 4413, f"closed with {code}; daphne's log:\n{daphne.log()}"
    assert {
        "t": "status", "pod": "", "state": "error",
        "message": "A message from the page was over 4 KiB; the connection was closed.",
    } in messages
    wait_for(lambda: daphne.connections_to(kube_port) <= connections_before, timeout=15, what="the log stream closing")
    assert "Exception inside application" not in daphne.log()
