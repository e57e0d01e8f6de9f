"""Shared by the log and terminal socket tests: services running for real on the devcluster,
and websocket clients through the real ASGI application."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.test import Client

from ale_site.asgi import application
from clusters.client import client_for
from environments.manifests import render_environment
from services.manifests import render_service
from services.models import Service
from tests.waiting import wait_for

ORIGIN = (b"origin", b"http://localhost")

# Every socket a test opens, so that the test's end can close what the test did not.
_opened: list[WebsocketCommunicator] = []


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


async def socket(path: str, *, user=None, origin: tuple[bytes, bytes] | None = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"host", b"localhost")]
    if origin:
        headers.append(origin)
    if user is not None:
        headers.append((b"cookie", await sync_to_async(session_cookie)(user)))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    _opened.append(communicator)
    return communicator


async def close_sockets() -> None:
    """What the server does when a browser goes: every socket still open gets its disconnect,
    so that no consumer, exec session or reader thread outlives the test that opened it (a
    socket the server closed itself, or refused, included)."""
    while _opened:
        communicator = _opened.pop()
        # `_future` is asgiref's (ApplicationCommunicator): None until the application was started.
        if communicator._future is None or communicator.future.done():
            continue  # never connected, or the consumer has already ended
        with contextlib.suppress(Exception):
            await communicator.disconnect(timeout=5)
    # The database connection the tests' own `sync_to_async` calls opened in asgiref's thread.
    await sync_to_async(connections.close_all)()


def pods_of(service: Service) -> list[dict]:
    kube = client_for(service.environment.cluster)
    items, _ = kube.list("v1", "Pod", namespace=service.namespace, label_selector=f"ale.dev/service={service.public_id}")
    return [pod for pod in items if not pod["metadata"].get("deletionTimestamp")]


def running_pods(service: Service, count: int = 1) -> list[dict]:
    def running() -> list[dict]:
        pods = [
            pod
            for pod in pods_of(service)
            if pod.get("status", {}).get("phase") == "Running"
            and all("running" in (s.get("state") or {}) for s in pod["status"].get("containerStatuses") or [{}])
        ]
        return pods if len(pods) >= count else []

    return sorted(wait_for(running, what=f"{count} running pod(s)"), key=lambda pod: pod["metadata"]["name"])


def run_service(
    environment,
    *,
    name: str = "app",
    image: str = "loggen:1",
    env: dict[str, str] | None = None,
    replicas: int = 1,
    sidecars: list[dict[str, Any]] | None = None,
) -> Service:
    """A service applied to the cluster the way the reconcile task applies it (plus optional
    extra containers in its pods), with its pods running."""
    service = Service.objects.create(
        environment=environment,
        name=name,
        image=image,
        port=8080,
        replicas=replicas,
        env_vars=[{"name": key, "value": value} for key, value in (env or {}).items()],
    )
    manifests = render_service(service)
    for manifest in manifests:
        if manifest["kind"] == "Deployment" and sidecars:
            manifest["spec"]["template"]["spec"]["containers"].extend(sidecars)
    client_for(environment.cluster).apply(render_environment(environment) + manifests)
    running_pods(service, replicas)
    return service


def delete_namespace(environment) -> None:
    client_for(environment.cluster).delete_namespace(environment.namespace)


async def receive_json(communicator: WebsocketCommunicator, timeout: float = 5) -> dict[str, Any]:
    return json.loads(await communicator.receive_from(timeout=timeout))


async def until(
    communicator: WebsocketCommunicator, predicate: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read messages until one matches; returns it and everything read before it."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no matching message within {timeout} s; got {[m.get('t') for m in seen][-20:]}")
        message = await receive_json(communicator, remaining)
        if predicate(message):
            return message, seen
        seen.append(message)


def stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("ale-")]


def connections_to(port: int) -> int:
    """This process's established TCP connections to `port` (the Kubernetes API)."""
    return sum(
        1
        for conn in psutil.Process().net_connections(kind="tcp")
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED
    )


async def settles(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `check` without blocking the loop; True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.05)
    return check()
