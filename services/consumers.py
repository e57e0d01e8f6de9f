"""The log viewer's and the terminal's websockets: a Kubernetes stream bridged to a browser.

Both check access at the handshake with the same helpers as the pages (an outsider, an
anonymous visitor and, for the terminal, a member where only owners may open one, are refused
before `accept`). The browser names a pod and a container of the service, nothing else: the
namespace, the label selector and the shell come from the server.

Wire protocol (JSON text frames unless said otherwise):

logs, server → browser
  {"t":"hello","pods":[…],"pod":"<name>|*","container":…,"previous":bool,"keepalive":s}
  {"t":"lines","pod":…,"lines":["<timestamp> <text>", …],"seq":N}   N: bytes sent so far
  {"t":"status","pod":…,"state":"streaming|reconnecting|ended|error|waiting","message":…}
  {"t":"marker","pod":…,"kind":"pod|restart","text":…}   a line of the viewer's own between two
      pods' logs (the view moved on after a redeploy) or two containers' (a restart)
  {"t":"pods","pods":[…],"pod":…,"container":…}   the service's pods changed
  {"t":"ping"}
logs, browser → server
  {"t":"ack","seq":N}   everything up to N is in the viewer's buffer
  {"t":"ping"} / {"t":"pong"}

terminal, server → browser: output as binary frames; {"t":"status",…}, {"t":"exit","code":…},
  {"t":"closed","reason":"idle",…}, {"t":"error",…}, {"t":"ping"}, {"t":"pong"}
terminal, browser → server: {"t":"in","d":"…"} (or a binary frame), {"t":"resize","cols":…,
  "rows":…}, {"t":"ack","seq":N}, {"t":"ping"}, {"t":"pong"}

Close codes: 1000 (the shell exited), 4404 (no such pod), 4408 (idle), 4413 (a message from the
browser over its limit), 4500 (a failure in the consumer), 4502 (the cluster failed); the server
sends the reason as a message first. Whichever way a socket ends, what it holds is released.

Flow control is by acknowledged watermarks, as in VS Code's terminal: once more than HIGH bytes
are unacknowledged the consumer stops taking from its pipe, the reader waits, and the
cluster's TCP connection backs up; below LOW it resumes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.http import Http404
from django.utils import timezone

from clusters.client import KubeClient, client_for
from clusters.errors import ClusterError
from clusters.streams import in_thread
from services.access import get_service_for_user, may_open_terminal
from services.builds import build_for, list_build_pods
from services.models import Build, Service, TerminalSession
from services.streams.exec_bridge import ExecBridge, Exited, Opened, Output
from services.streams.log_reader import DEFAULT_TAIL, MAX_TAIL, Lines, LogOptions, LogReader, Marker, Status
from services.streams.pipe import Pipe, join_threads
from services.streams.pods import MAX_PODS, PodInfo, list_service_pods, pod_marker, pod_revision

logger = logging.getLogger(__name__)

# Close codes. An application may send only 1000 and 3000-4999: Daphne refuses any other code
# (1009 included) with an exception, the browser then sees 1011 and nothing is torn down. Ours
# are 4000 plus the HTTP status that says the same.
CLOSE_NORMAL = 1000
CLOSE_NO_POD = 4404
CLOSE_IDLE = 4408
CLOSE_TOO_BIG = 4413
CLOSE_INTERNAL = 4500
CLOSE_FAILED = 4502

# Daphne drops a close frame's reason, so each is also sent as a message before the close (and
# static/js/logs.js and terminal.js know the codes): at most 123 bytes, a close frame's limit.
TOO_BIG_CONTROL_REASON = "A message from the page was over 4 KiB; the connection was closed."
TOO_BIG_INPUT_REASON = "The input was over 256 KiB at once; the terminal was closed."
INTERNAL_REASON = "Something went wrong on the server; the connection was closed."

# Messages from the browser are acks, pings, keystrokes and pastes: anything bigger is not ours.
MAX_CONTROL_MESSAGE = 4 * 1024
MAX_INPUT_MESSAGE = 256 * 1024

LOG_HIGH_WATERMARK = 4 * 1024 * 1024
LOG_LOW_WATERMARK = 1024 * 1024
LOG_PIPE_CAPACITY = 8  # reads of at most 256 KiB: the most a socket holds between cluster and browser
# A trickle is sent at most this often (a flood goes as fast as the browser acknowledges):
# every frame costs a send and an ack through the whole websocket stack, and hundreds of
# followed logs each sending 50 frames a second would keep the loop busy with just that.
LOG_FRAME_SECONDS = 0.1
LOG_FRAME_BYTES = 512 * 1024
LOG_FRAME_SMALL = 32 * 1024
POD_WAIT_SECONDS = 2.0
ALL_PODS_RELIST_SECONDS = 10.0
# "Newest running pod" looks this often whether its pod is still there (a redeploy replaces it)
# and whether the pod list changed; a pod shutting down may finish printing for this long.
NEWEST_POD_RELIST_SECONDS = 2.0
SWITCH_GRACE_SECONDS = 30.0

TERMINAL_HIGH_WATERMARK = 100_000
TERMINAL_LOW_WATERMARK = 5_000
TERMINAL_PIPE_CAPACITY = 16
TERMINAL_FRAME_BYTES = 256 * 1024


def _dumps(message: dict[str, Any]) -> str:
    # ASCII output (non-ASCII as \u escapes) is the encoder's fastest path in CPython.
    return json.dumps(message, separators=(",", ":"))


def _query(scope: dict[str, Any]) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return {key: values[0] for key, values in parse_qs(raw).items() if values}


def _int(value: Any, default: int, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return max(low, min(high, number))


def _flag(value: str | None) -> bool:
    return (value or "").lower() in {"1", "true", "yes", "on"}


def _parse(text_data: str | None, limit: int) -> dict[str, Any] | None | bool:
    """The browser's message as a dict; None to ignore it; False when it is too big to accept."""
    if text_data is None:
        return None
    if len(text_data) > limit:
        return False
    try:
        message = json.loads(text_data)
    except ValueError:
        return None
    return message if isinstance(message, dict) and isinstance(message.get("t"), str) else None


class _StreamConsumer(AsyncWebsocketConsumer):
    """What both sockets share: the service from the handshake, background tasks, keepalive,
    acknowledged watermarks."""

    high_watermark = LOG_HIGH_WATERMARK
    low_watermark = LOG_LOW_WATERMARK
    # No channel layer: nothing is ever sent to these sockets through groups, and a layer would
    # cost every socket a receive loop on Redis.
    channel_layer_alias = None

    service: Service
    pipe: Pipe | None = None
    _accepted = False
    _closing = False
    _released = False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # However the consumer ends (the browser left, a handler raised, the server cancelled
            # it after a lost connection), the shell, threads and connections it holds go.
            await self._release()

    async def dispatch(self, message: dict[str, Any]) -> None:
        try:
            await self._dispatch(message)
        except StopConsumer:
            raise
        except Exception:
            # A bug in a handler: say so and end the socket with a code Daphne accepts, instead
            # of letting the exception reach Daphne (1011, and disconnect() never runs).
            logger.exception("%s failed on %s", type(self).__name__, message.get("type"))
            await self._abort(CLOSE_INTERNAL, INTERNAL_REASON)
            raise StopConsumer from None

    async def _dispatch(self, message: dict[str, Any]) -> None:
        # Channels closes stale database connections before every message it dispatches: a hop
        # to its one shared sync thread. What arrives once a socket is open (acks, pings,
        # keystrokes) touches no database, and a flood brings thousands of them.
        if message.get("type") == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def disconnect(self, code: int) -> None:
        await self._release()

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        await super().accept(subprotocol, headers)
        self._accepted = True

    async def _release(self) -> None:
        """Stop what the socket holds, once, whichever way it ended."""
        if self._released:
            return
        self._released = True
        await self._teardown()

    async def _teardown(self) -> None:
        await self._stop_tasks()
        if self.pipe is not None:
            self.pipe.close()

    async def _service_or_refuse(self) -> Service | None:
        public_id = self.scope["url_route"]["kwargs"]["public_id"]
        try:
            return await database_sync_to_async(get_service_for_user)(self.scope["user"], public_id)
        except Http404:
            # Before accept: the handshake fails (HTTP 403) and says nothing about existence.
            await self.close()
            return None

    def _start(self, *coroutines: Any) -> None:
        self._sent = 0
        self._acked = 0
        self._window = asyncio.Event()
        self._window.set()
        self._tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task) -> None:
        # A background task that raised would otherwise end silently and leave the socket open
        # with nothing behind it: end the socket as a failed handler does.
        if task.cancelled() or task.exception() is None or self._closing:
            return
        logger.error("%s task failed", type(self).__name__, exc_info=task.exception())
        self._aborting = asyncio.create_task(self._abort(CLOSE_INTERNAL, INTERNAL_REASON))

    async def _stop_tasks(self) -> None:
        current = asyncio.current_task()
        tasks = [task for task in getattr(self, "_tasks", []) if task is not current]
        for task in tasks:
            task.cancel()
        # Their ends (cancellations, errors) are collected, not raised; a cancellation of this
        # task itself still propagates, which suppressing CancelledError around each await
        # would swallow.
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _end(self, code: int, reason: str = "") -> None:
        """Close from the server side, once, and release what the socket holds at once rather
        than when the browser answers the close (a browser that never does holds nothing)."""
        if self._closing:
            return
        self._closing = True
        try:
            await self.close(code=code, reason=reason or None)
        finally:
            await self._release()

    async def _abort(self, code: int, reason: str) -> None:
        """End the socket for a reason the page shows: a message it reads, then the close."""
        if self._closing:
            return
        if not self._accepted:
            # Before accept the handshake just fails (a send would accept the socket).
            await self.close()
            await self._release()
            return
        try:
            await self._say_error(reason)
        except Exception:
            logger.warning("could not tell the page why its socket closes", exc_info=True)
        try:
            await self._end(code, reason)
        except Exception:
            logger.warning("could not close the socket", exc_info=True)

    async def _say_error(self, message: str) -> None:
        raise NotImplementedError

    async def _keepalive(self) -> None:
        # Proxies drop sockets that stay silent; a ping the browser answers keeps them open, and
        # the browser reconnects when pings stop coming.
        interval = max(1, int(settings.STREAM_KEEPALIVE_SECONDS))
        while True:
            await asyncio.sleep(interval)
            await self.send(text_data='{"t":"ping"}')

    async def _wait_window(self) -> None:
        if self._sent - self._acked > self.high_watermark:
            self._window.clear()
            await self._window.wait()

    def acknowledge(self, seq: Any) -> None:
        """The browser took every frame up to `seq`: the window opens again below the low watermark."""
        if isinstance(seq, int) and not isinstance(seq, bool):
            self._acked = max(self._acked, min(seq, self._sent))
            if self._sent - self._acked <= self.low_watermark:
                self._window.set()

    async def _client(self) -> KubeClient:
        return await in_thread(client_for, self.service.environment.cluster)

    async def _pods(self, kube: KubeClient) -> list[PodInfo]:
        return await in_thread(list_service_pods, kube, self.service)


class LogConsumer(_StreamConsumer):
    """Follow the logs of one pod, or of every pod of the service with each line labelled.

    With `?build=<number>|latest` it follows the pod of that build's Job instead: the build log.
    """

    readers: dict[str, LogReader]
    build: Build | None = None
    shown_container = ""

    async def connect(self) -> None:
        service = await self._service_or_refuse()
        if service is None:
            return
        self.service = service
        query = _query(self.scope)
        try:
            # Running logs (no build asked for) need no second trip to the database.
            if query.get("build", "").strip():
                self.build = await database_sync_to_async(build_for)(service, query["build"])
        except Build.DoesNotExist:
            # Refused before accept, like a service that is not the user's.
            await self.close()
            return
        self.wanted_pod = query.get("pod", "")
        self.wanted_container = query.get("container", "")
        tail = query.get("tail", "")
        self.options = LogOptions(
            container=None,
            tail=None if tail == "all" else _int(tail or DEFAULT_TAIL, DEFAULT_TAIL, 0, MAX_TAIL),
            previous=_flag(query.get("previous")),
            since=query.get("since", "")[:40],
        )
        self.readers = {}
        await self.accept()
        self.pipe = Pipe(asyncio.get_running_loop(), LOG_PIPE_CAPACITY)
        self._start(self._run(), self._keepalive())

    async def _teardown(self) -> None:
        await super()._teardown()
        await asyncio.gather(*(reader.stop() for reader in getattr(self, "readers", {}).values()))

    async def _say_error(self, message: str) -> None:
        await self._status("", "error", message)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = _parse(text_data, MAX_CONTROL_MESSAGE)
        if message is False or (bytes_data is not None and len(bytes_data) > MAX_CONTROL_MESSAGE):
            await self._abort(CLOSE_TOO_BIG, TOO_BIG_CONTROL_REASON)
            return
        if not message:
            return
        if message["t"] == "ack":
            self.acknowledge(message.get("seq"))
        elif message["t"] == "ping":
            await self.send(text_data='{"t":"pong"}')

    # -- the stream

    async def _status(self, pod: str, state: str, message: str = "") -> None:
        await self.send(text_data=_dumps({"t": "status", "pod": pod, "state": state, "message": message}))

    async def _run(self) -> None:
        try:
            kube = await self._client()
            pods = await self._wait_for_pods(kube)
        except ClusterError as exc:
            await self._status("", "error", exc.user_message)
            await self._end(CLOSE_FAILED)
            return
        chosen = self._choose(pods)
        if chosen is None:
            await self._status("", "error", "That pod is not one of this service's pods any more.")
            await self._end(CLOSE_NO_POD)
            return
        container = self._container(chosen[0]) if chosen else ""
        self.shown_container = container
        await self.send(
            text_data=_dumps(
                {
                    "t": "hello",
                    "pods": [pod.as_json() for pod in pods],
                    "pod": "*" if self.wanted_pod == "*" else (chosen[0].name if chosen else ""),
                    "container": container,
                    "previous": self.options.previous,
                    "tail": self.options.tail,
                    "keepalive": settings.STREAM_KEEPALIVE_SECONDS,
                    "max_pods": MAX_PODS,
                }
            )
        )
        for pod in chosen:
            self._read(kube, pod)
        tasks = [asyncio.create_task(self._pump())]
        if self.wanted_pod == "*":
            tasks.append(asyncio.create_task(self._follow_new_pods(kube, pods)))
        elif not self.wanted_pod and not self.options.previous and self.build is None:
            tasks.append(asyncio.create_task(self._follow_newest(kube, pods, chosen[0])))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _pods(self, kube: KubeClient) -> list[PodInfo]:
        if self.build is not None:
            # A build pod still Pending has no log to follow yet: wait for it as for no pod.
            pods = await in_thread(list_build_pods, kube, self.service, self.build)
            return [pod for pod in pods if pod.phase != "Pending"]
        return await super()._pods(kube)

    async def _wait_for_pods(self, kube: KubeClient) -> list[PodInfo]:
        """The service's pods; while it has none yet (starting, or stopped), say so and look again."""
        told = False
        while True:
            pods = await self._pods(kube)
            if pods:
                return pods
            if not told:
                waiting = (
                    "The build has not started yet; waiting for its pod…"
                    if self.build is not None
                    else "The service has no pods yet; waiting for one to start…"
                )
                await self._status("", "waiting", waiting)
                told = True
            await asyncio.sleep(POD_WAIT_SECONDS)

    def _choose(self, pods: list[PodInfo]) -> list[PodInfo] | None:
        """The pods to read: every pod (at most MAX_PODS), the one asked for, or by default the
        newest running one. None when the pod asked for is not the service's."""
        if self.wanted_pod == "*":
            return pods[-MAX_PODS:]
        if self.wanted_pod:
            match = [pod for pod in pods if pod.name == self.wanted_pod]
            return match or None
        running = [pod for pod in pods if pod.phase == "Running"]
        return [(running or pods)[-1]]

    def _container(self, pod: PodInfo) -> str:
        if self.wanted_container in pod.containers:
            return self.wanted_container
        return pod.containers[0] if pod.containers else ""

    def _read(self, kube: KubeClient, pod: PodInfo, *, since: str | None = None) -> None:
        assert self.pipe is not None
        container = self._container(pod)
        options = LogOptions(
            container=container or None,
            tail=self.options.tail,
            previous=self.options.previous,
            since=self.options.since if since is None else since,
            encoded=True,
        )
        reader = LogReader(
            kube, self.service.namespace, pod.name, options, self.pipe, container_id=pod.container_ids.get(container, "")
        )
        self.readers[pod.name] = reader
        reader.start()

    async def _send_pods(self, pods: list[PodInfo], shown: list[PodInfo], current: str) -> None:
        """Tell the page the service's pods when they changed since `shown`."""
        if [pod.as_json() for pod in pods] != [pod.as_json() for pod in shown]:
            listed = next((pod for pod in pods if pod.name == current), None)
            await self.send(
                text_data=_dumps(
                    {
                        "t": "pods",
                        "pods": [pod.as_json() for pod in pods],
                        "pod": current,
                        "container": self._container(listed) if listed else self.shown_container,
                    }
                )
            )

    async def _follow_newest(self, kube: KubeClient, shown: list[PodInfo], current: PodInfo) -> None:
        """The "Newest running pod" choice: when a redeploy (or a deletion) ends the pod being
        read, move on to the newest running one, with a marker line between the two logs.

        The old pod's reader is left to finish while its stream is open (a pod shutting down
        prints its last lines then), for at most SWITCH_GRACE_SECONDS.
        """
        assert self.pipe is not None
        gone_since: float | None = None
        while True:
            await asyncio.sleep(NEWEST_POD_RELIST_SECONDS)
            try:
                pods = await self._pods(kube)
            except ClusterError:
                continue
            await self._send_pods(pods, shown, current.name)
            shown = pods
            if any(pod.name == current.name for pod in pods):
                gone_since = None
                continue
            running = [pod for pod in pods if pod.phase == "Running"]
            if not running:
                continue  # a Recreate rollout: the new pod is still starting
            loop = asyncio.get_running_loop()
            gone_since = gone_since if gone_since is not None else loop.time()
            old = self.readers.get(current.name)
            if old is not None and old.streaming and loop.time() - gone_since < SWITCH_GRACE_SECONDS:
                continue
            if old is not None:
                await old.stop()
                del self.readers[current.name]
            current, gone_since = running[-1], None
            try:
                revision = await in_thread(pod_revision, kube, self.service.namespace, current.replica_set)
            except ClusterError:
                revision = ""
            # Through the pipe, after what the old reader handed over and before the new one's lines.
            await self.pipe.put_async(Marker(current.name, "pod", pod_marker(current, revision)))
            await self._send_pods(pods, [], current.name)
            # The new pod's own log from its start (its tail): its lines may be older than the
            # old pod's last one, so the browser's resume point does not apply to it.
            self._read(kube, current, since="")

    async def _follow_new_pods(self, kube: KubeClient, shown: list[PodInfo]) -> None:
        """All-pods mode: a pod that appears later (a scale-up, a new rollout) joins the view."""
        while True:
            await asyncio.sleep(ALL_PODS_RELIST_SECONDS)
            try:
                pods = await self._pods(kube)
            except ClusterError:
                continue
            await self._send_pods(pods, shown, "*")
            shown = pods
            for pod in pods:
                if pod.name not in self.readers and len(self.readers) < MAX_PODS and pod.phase != "Pending":
                    await self._status(pod.name, "streaming", "A new pod joined.")
                    self._read(kube, pod)

    async def _pump(self) -> None:
        """Batch what the readers hand over into at most one frame per LOG_FRAME_SECONDS."""
        assert self.pipe is not None
        loop = asyncio.get_running_loop()
        last_send, last_size = 0.0, 0
        while True:
            await self._wait_window()
            items = [await self.pipe.get()]
            size = self._drain(items)
            # A trickle: what arrives until LOG_FRAME_SECONDS after the last frame goes in one
            # frame, rather than a line per frame. Once a frame's worth is there (a flood) it
            # goes at once, however recent the last frame; so does the small remainder that
            # ends a flood (the last frame was big), rather than trailing it by LOG_FRAME_SECONDS.
            deadline = last_send + LOG_FRAME_SECONDS
            while size < LOG_FRAME_SMALL and last_size < LOG_FRAME_SMALL and (remaining := deadline - loop.time()) > 0:
                if not await self.pipe.wait_for_items(remaining):
                    break
                size = self._drain(items)
            await self._send_items(items)
            last_send, last_size = loop.time(), size

    def _drain(self, items: list[Any]) -> int:
        """Add what is waiting in the pipe to `items`, up to a frame's size; returns the size."""
        assert self.pipe is not None
        size = sum(getattr(item, "size", 0) for item in items)
        while size < LOG_FRAME_BYTES:
            try:
                item = self.pipe.get_nowait()
            except asyncio.QueueEmpty:
                break
            items.append(item)
            size += getattr(item, "size", 0)
        return size

    async def _send_items(self, items: list[Lines | Status | Marker]) -> None:
        """One frame per run of a pod's lines, built from the JSON strings the readers made:
        the loop only joins them."""
        pod: str | None = None
        payloads: list[str] = []
        for item in [*items, None]:
            if isinstance(item, Lines) and item.pod == pod:
                payloads.append(item.payload)
                self._sent += item.size
                continue
            if pod is not None:
                await self.send(
                    text_data=f'{{"t":"lines","pod":{_dumps(pod)},"lines":[{",".join(payloads)}],"seq":{self._sent}}}'
                )
                pod, payloads = None, []
            if isinstance(item, Lines):
                pod, payloads = item.pod, [item.payload]
                self._sent += item.size
            elif isinstance(item, Status):
                await self._status(item.pod, item.state, item.message)
            elif isinstance(item, Marker):
                await self.send(
                    text_data=_dumps({"t": "marker", "pod": item.pod, "kind": item.kind, "text": item.text})
                )


class TerminalConsumer(_StreamConsumer):
    """A shell in one container of one of the service's running pods."""

    high_watermark = TERMINAL_HIGH_WATERMARK
    low_watermark = TERMINAL_LOW_WATERMARK

    bridge: ExecBridge | None = None
    record: TerminalSession | None = None
    close_reason = ""
    exit_code: int | None = None

    async def connect(self) -> None:
        service = await self._service_or_refuse()
        if service is None:
            return
        user = self.scope["user"]
        if not await database_sync_to_async(may_open_terminal)(user, service.environment):
            await self.close()
            return
        self.service = service
        query = _query(self.scope)
        self.wanted_pod = query.get("pod", "")
        self.wanted_container = query.get("container", "")
        self.size = (_int(query.get("cols"), 80, 2, 1000), _int(query.get("rows"), 24, 2, 500))
        self.last_input = time.monotonic()
        await self.accept()
        self.pipe = Pipe(asyncio.get_running_loop(), TERMINAL_PIPE_CAPACITY)
        self._start(self._run(), self._keepalive(), self._idle())

    async def _teardown(self) -> None:
        await super()._teardown()
        if self.bridge is not None:
            self.bridge.stop()
            await join_threads(self.bridge.threads)
        await self._record_close(self.close_reason or TerminalSession.CloseReason.CLIENT)

    async def _say_error(self, message: str) -> None:
        self.close_reason = TerminalSession.CloseReason.ERROR
        await self.send(text_data=_dumps({"t": "error", "message": message}))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None:
            if len(bytes_data) > MAX_INPUT_MESSAGE:
                await self._abort(CLOSE_TOO_BIG, TOO_BIG_INPUT_REASON)
            else:
                self._input(bytes_data)
            return
        message = _parse(text_data, MAX_INPUT_MESSAGE)
        if message is False:
            await self._abort(CLOSE_TOO_BIG, TOO_BIG_INPUT_REASON)
            return
        if not message:
            return
        kind = message["t"]
        if kind == "in" and isinstance(message.get("d"), str):
            self._input(message["d"])
        elif kind == "resize":
            cols, rows = message.get("cols"), message.get("rows")
            if isinstance(cols, int) and isinstance(rows, int) and 2 <= cols <= 1000 and 2 <= rows <= 500:
                self.size = (cols, rows)
                if self.bridge is not None:
                    self.bridge.resize(cols, rows)
        elif kind == "ack":
            self.acknowledge(message.get("seq"))
        elif kind == "ping":
            await self.send(text_data='{"t":"pong"}')

    def _input(self, data: str | bytes) -> None:
        if self.bridge is not None and data:
            self.last_input = time.monotonic()
            self.bridge.write(data)

    # -- the session

    async def _run(self) -> None:
        try:
            kube = await self._client()
            pods = await self._pods(kube)
        except ClusterError as exc:
            await self._fail(exc.user_message)
            return
        running = [pod for pod in pods if pod.phase == "Running"]
        pod = next((p for p in running if p.name == self.wanted_pod), None) if self.wanted_pod else None
        if pod is None and self.wanted_pod:
            await self._fail("That pod is not running (or not one of this service's pods).", CLOSE_NO_POD)
            return
        pod = pod or (running[-1] if running else None)
        if pod is None:
            await self._fail("The service has no running pod to open a terminal in.", CLOSE_NO_POD)
            return
        container = self.wanted_container if self.wanted_container in pod.containers else pod.containers[0]
        await self.send(
            text_data=_dumps(
                {
                    "t": "status",
                    "state": "connecting",
                    "pods": [p.as_json() for p in running],
                    "pod": pod.name,
                    "container": container,
                    "keepalive": settings.STREAM_KEEPALIVE_SECONDS,
                    "idle_timeout": settings.TERMINAL_IDLE_TIMEOUT,
                }
            )
        )
        assert self.pipe is not None
        cols, rows = self.size
        self.bridge = ExecBridge(kube, self.service.namespace, pod.name, container, self.pipe, cols=cols, rows=rows)
        self.bridge.start()
        await self._pump(pod.name, container)

    async def _pump(self, pod: str, container: str) -> None:
        assert self.pipe is not None
        while True:
            await self._wait_window()
            item = await self.pipe.get()
            if not isinstance(item, Output):
                if await self._handle(item, pod, container):
                    return
                continue
            # Whatever else is already waiting goes in the same frame: no added delay for a
            # keystroke's echo, few frames for a flood.
            chunks, size, other = [item.data], len(item.data), None
            while size < TERMINAL_FRAME_BYTES:
                try:
                    more = self.pipe.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if not isinstance(more, Output):
                    other = more
                    break
                chunks.append(more.data)
                size += len(more.data)
            await self._send_output(chunks)
            if other is not None and await self._handle(other, pod, container):
                return

    async def _send_output(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        if data:
            self._sent += len(data)
            await self.send(bytes_data=data)

    async def _handle(self, item: Any, pod: str, container: str) -> bool:
        """Act on a control item from the session's thread; True once the session is over."""
        if isinstance(item, Opened):
            self.record = await database_sync_to_async(TerminalSession.objects.create)(
                service=self.service,
                user=self.scope["user"],
                username=self.scope["user"].get_username(),
                pod=pod,
                container=container,
            )
            await self.send(text_data=_dumps({"t": "status", "state": "open", "pod": pod, "container": container}))
        elif isinstance(item, Exited):
            if item.failed:
                await self._fail(item.message or "The terminal session failed.")
                return True
            self.close_reason, self.exit_code = TerminalSession.CloseReason.EXITED, item.code
            await self.send(text_data=_dumps({"t": "exit", "code": item.code, "message": item.message}))
            await self._record_close(self.close_reason)
            await self._end(CLOSE_NORMAL)
            return True
        return False

    async def _fail(self, message: str, code: int = CLOSE_FAILED) -> None:
        await self._say_error(message)
        await self._record_close(self.close_reason)
        await self._end(code)

    async def _idle(self) -> None:
        limit = max(1, int(settings.TERMINAL_IDLE_TIMEOUT))
        step = min(30.0, max(0.2, limit / 10))
        while True:
            await asyncio.sleep(step)
            idle = time.monotonic() - self.last_input
            if idle >= limit:
                self.close_reason = TerminalSession.CloseReason.IDLE
                minutes = limit / 60
                text = f"{minutes:g} minutes" if minutes >= 1 else f"{limit} seconds"
                await self.send(
                    text_data=_dumps({"t": "closed", "reason": "idle", "message": f"Closed after {text} without input."})
                )
                await self._record_close(self.close_reason)
                await self._end(CLOSE_IDLE)
                return

    async def _record_close(self, reason: str) -> None:
        record, self.record = self.record, None
        if record is None:
            return
        await database_sync_to_async(
            TerminalSession.objects.filter(pk=record.pk, closed_at__isnull=True).update
        )(closed_at=timezone.now(), close_reason=reason, exit_code=self.exit_code)
