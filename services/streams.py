"""The bridge between Kubernetes streams and the event loop of the socket consumers.

A followed pod log is read on the event loop itself (`LogReader`, a task), with aiohttp: the
loop waits on its socket like on any other, and a server following hundreds of logs runs no
thread for them. An exec session (the terminal) is read by threads of its own (`ExecBridge`),
because the official client's websocket for it is blocking; never by the one shared thread of
`sync_to_async`, where a session open for hours would stall every database call of the process.

Both hand what they read to the consumer through a `Pipe`, whose capacity is bounded: when the
consumer stops taking items (its browser is behind on acknowledgements) the reader waits, stops
reading the socket to the cluster, and TCP pushes back to the cluster — memory stays bounded
and nothing is lost.

Closing is always from the loop side: `Pipe.close()` wakes a waiting writer, a log reader is
cancelled and closes its stream, an exec session's threads are woken and `join_threads` waits
for them to be gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser

from clusters.client import AsyncLogStream, ClusterError, ExecSession, KubeClient, in_thread
from environments.models import Environment
from services.ansi import MAX_LINE_CHARS, ascii_block_is_clean, block_is_clean, sanitize, strip_all
from services.models import Service
from spaces.models import Membership

logger = logging.getLogger(__name__)

# All-pods mode reads at most this many pods at once: one thread and one connection each.
MAX_PODS = 20
DEFAULT_TAIL = 500
MAX_TAIL = 100_000
# A reader whose log ended (the container stopped, and is perhaps restarting) looks again after
# this long, then backs off up to the cap while nothing new comes.
REOPEN_SECONDS = 1.0
REOPEN_MAX_SECONDS = 10.0
# A line with no newline is cut at this many bytes (see `ansi.MAX_LINE_CHARS`).
MAX_LINE_BYTES = MAX_LINE_CHARS * 4
JOIN_SECONDS = 3.0
# A followed log that trickles (a read brought less than this) is read again only after this
# long: what arrives meanwhile comes in one read. Hundreds of followers would otherwise each cost
# the event loop a read, a split and a pipe hand-over for every line printed.
TRICKLE_BYTES = 4096
TRICKLE_SECONDS = 0.05

# The shell of a terminal: bash when the image has it, sh otherwise. Chosen in the container by
# sh itself, so one exec does it; the browser never sends a command. TERM is set because exec
# sessions get none from the runtime, and full-screen programs need it. The INT trap keeps a
# Ctrl-C typed in the first milliseconds from killing the chooser (it is non-interactive); a
# caught signal goes back to its default at `exec`, so the shell gets Ctrl-C as usual.
SHELL_COMMAND = [
    "/bin/sh",
    "-c",
    "trap : INT; TERM=xterm-256color; export TERM; "
    "if command -v bash >/dev/null 2>&1; then exec bash; else exec sh; fi",
]


# --- access ------------------------------------------------------------------------------------------


def is_space_owner(user: AbstractBaseUser | AnonymousUser, environment: Environment) -> bool:
    if not user.is_authenticated:
        return False
    return Membership.objects.filter(
        space_id=environment.project.space_id, user=user, role=Membership.Role.OWNER
    ).exists()


def may_open_terminal(user: AbstractBaseUser | AnonymousUser, environment: Environment) -> bool:
    """The environment's terminal setting: all members, or the space's owners only."""
    if environment.terminal_access == Environment.TerminalAccess.OWNERS_ONLY:
        return is_space_owner(user, environment)
    return user.is_authenticated


# --- pods ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodInfo:
    name: str
    phase: str
    containers: tuple[str, ...]
    restarts: dict[str, int] = field(default_factory=dict)
    running: frozenset[str] = frozenset()
    created: str = ""
    replica_set: str = ""  # the ReplicaSet that made it: where its revision is written
    container_ids: dict[str, str] = field(default_factory=dict)  # a restart changes a container's

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "containers": list(self.containers),
            "restarts": dict(self.restarts),
            "running": sorted(self.running),
        }


def pod_info(pod: dict) -> PodInfo:
    metadata, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return PodInfo(
        name=metadata.get("name", ""),
        phase=status.get("phase", "Unknown"),
        containers=tuple(c.get("name", "") for c in spec.get("containers") or []),
        restarts={s.get("name", ""): int(s.get("restartCount") or 0) for s in statuses},
        container_ids={s.get("name", ""): s.get("containerID", "") for s in statuses if s.get("containerID")},
        running=frozenset(s.get("name", "") for s in statuses if "running" in (s.get("state") or {})),
        created=metadata.get("creationTimestamp") or "",
        replica_set=next(
            (ref.get("name", "") for ref in metadata.get("ownerReferences") or [] if ref.get("kind") == "ReplicaSet"),
            "",
        ),
    )


def list_service_pods(kube: KubeClient, service: Service) -> list[PodInfo]:
    """The service's pods, oldest first: only these may be read or entered.

    Selected by the service's public id label, in the service's own namespace: the browser
    names a pod, never a namespace or a selector, and a name outside this list is refused.
    """
    items, _ = kube.list("v1", "Pod", namespace=service.namespace, label_selector=f"ale.dev/service={service.public_id}")
    pods = [pod_info(item) for item in items if not (item.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(pods, key=lambda pod: (pod.created, pod.name))


def pod_revision(kube: KubeClient, namespace: str, replica_set: str) -> str:
    """The Deployment revision a pod runs, from its ReplicaSet ("" when it has none)."""
    if not replica_set:
        return ""
    owner = kube.get("apps/v1", "ReplicaSet", replica_set, namespace) or {}
    return str(((owner.get("metadata") or {}).get("annotations") or {}).get("deployment.kubernetes.io/revision", ""))


def _clock(ts: str) -> str:
    """An RFC 3339 timestamp as the marker lines show it: `2026-12-05 20:41:07 UTC`."""
    return f"{ts[:10]} {ts[11:19]} UTC" if is_timestamp(ts) else ""


def pod_marker(pod: PodInfo, revision: str) -> str:
    """The line between two pods' logs when the view moves on to `pod` (after a redeploy)."""
    parts = [f"Now following pod {pod.name}"]
    if revision:
        parts.append(f"revision {revision}")
    if _clock(pod.created):
        parts.append(f"started {_clock(pod.created)}")
    return "── " + " · ".join(parts) + " ──"


def restart_marker(pod: str, container: str, restarts: int, revision: str, started: str) -> str:
    """The line between two containers' logs when the container restarted (a crash, an OOM kill)."""
    parts = [f"Container {container} restarted (restart {restarts})", f"pod {pod}"]
    if revision:
        parts.append(f"revision {revision}")
    if _clock(started):
        parts.append(f"started {_clock(started)}")
    return "── " + " · ".join(parts) + " ──"


def short_pod_name(pod: str) -> str:
    """The label of a pod's lines in all-pods mode: its random suffix (`web-7d9c-x2x8q` → `x2x8q`)."""
    return pod.rsplit("-", 1)[-1] if "-" in pod else pod


# --- timestamps -------------------------------------------------------------------------------------


def timestamp_key(ts: str) -> str:
    """A timestamp made comparable as a string: Kubernetes trims trailing zeros of the fraction
    (RFC3339Nano), so `…:00.5Z` and `…:00.25Z` sort wrong until padded to nine digits."""
    base, _, rest = ts.partition(".")
    if not rest:
        return base.rstrip("Z") + ".000000000Z"
    return f"{base}.{rest.rstrip('Z')[:9].ljust(9, '0')}Z"


def seconds_since(ts: str, *, now: float | None = None) -> int:
    """Whole seconds from `ts` to now, rounded up, plus a margin for the cluster's clock being
    behind ours; the lines before `ts` that this lets through are dropped by timestamp."""
    try:
        moment = datetime.strptime(timestamp_key(ts)[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
    except ValueError:
        return 0
    elapsed = (now if now is not None else time.time()) - moment.timestamp()
    return max(1, math.ceil(elapsed) + 5)


def is_timestamp(ts: str) -> bool:
    return len(ts) >= 20 and ts[4] == "-" and ts[10] == "T" and ts.endswith("Z")


def split_stamp(line: str) -> tuple[str, str]:
    """`"<timestamp> <text>"` → (timestamp, text); ("", line) when it has no timestamp."""
    ts, sep, text = line.partition(" ")
    return (ts, text) if sep and is_timestamp(ts) else ("", line)


def json_strings(lines: list[str]) -> str:
    """Lines as the comma-separated JSON strings of an array's inside (no brackets)."""
    return json.dumps(lines)[1:-1] if lines else ""


# No line longer than this passes the fast paths (a timestamp and its space come before the
# text, whose limit is MAX_LINE_CHARS).
_LINE_LIMIT = MAX_LINE_CHARS + 40
_LINE_WINDOW = _LINE_LIMIT // 2


def _lines_fit(block: bytes) -> bool:
    """True when no line of `block` is longer than `_LINE_LIMIT` bytes.

    A line that long covers at least one whole aligned window of half that size, so a block
    whose every such window holds a newline is fine: a few `find`s in C instead of splitting
    the block into its lines. Only when one of them has none are the lines measured.
    """
    if len(block) <= _LINE_LIMIT:
        return True
    for start in range(0, len(block) - _LINE_WINDOW + 1, _LINE_WINDOW):
        if block.find(b"\n", start, start + _LINE_WINDOW) < 0:
            return max(map(len, block.split(b"\n"))) <= _LINE_LIMIT
    return True


def _escape_ascii(block: bytes) -> tuple[bytes, int]:
    """Clean ASCII lines (no control character but tabs, and newlines between them) as the
    inside of JSON strings joined by `","`, and their number: only backslashes, quotes and tabs
    need escaping."""
    if b"\\" in block:
        block = block.replace(b"\\", b"\\\\")
    if b'"' in block:
        block = block.replace(b'"', b'\\"')
    if b"\t" in block:
        block = block.replace(b"\t", b"\\t")
    joined = block.replace(b"\n", b'","')
    # Each newline became three characters: what the join added counts the lines.
    return joined, (len(joined) - len(block)) // 2 + 1


def _escape_text(text: str) -> tuple[str, int]:
    """`_escape_ascii` for clean lines that are not all ASCII."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if '"' in text:
        text = text.replace('"', '\\"')
    if "\t" in text:
        text = text.replace("\t", "\\t")
    joined = text.replace("\n", '","')
    return joined, (len(joined) - len(text)) // 2 + 1


class LineSplitter:
    """Bytes of a timestamped log in, sanitised `"<timestamp> <text>"` lines out, across chunk
    boundaries.

    A whole chunk is decoded, checked and split at once: a log is mostly clean text, and the
    per-line work of Python would be most of the cost of streaming it (a burst of 100,000
    lines). Only the lines of a chunk that holds something to remove are cleaned one by one.

    `blocks` hands out the complete lines of a chunk as one block of bytes; `lines` makes them
    a list, `encode` the JSON strings of a frame directly (the socket needs nothing else).
    """

    def __init__(self, *, keep_colours: bool = True) -> None:
        self._rest = b""
        self._clean: Callable[[str], str] = sanitize if keep_colours else strip_all

    def feed(self, chunk: bytes) -> tuple[list[str], int]:
        """The complete lines in `chunk` (and before it), and their size in bytes."""
        blocks, size = self.blocks(chunk)
        lines: list[str] = []
        for block in blocks:
            lines += self.lines(block)
        return lines, size

    def blocks(self, chunk: bytes) -> tuple[list[bytes], int]:
        """The complete lines in `chunk` (and before it) as blocks of bytes without their last
        newline, and their size in bytes."""
        data = self._rest + chunk if self._rest else chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            if len(data) <= MAX_LINE_BYTES:
                self._rest = data
                return [], 0
            # No newline in sight: let the line out in pieces rather than buffer it whole.
            self._rest = b""
            return [data], len(data)
        self._rest = data[cut + 1 :]
        # A newline byte never occurs inside a UTF-8 sequence: the cut splits no character.
        blocks = [data[:cut]]
        size = cut + 1
        if len(self._rest) > MAX_LINE_BYTES:
            blocks.append(self._rest)
            size += len(self._rest)
            self._rest = b""
        return blocks, size

    def flush(self) -> list[str]:
        rest, self._rest = self._rest, b""
        return self._lines(rest.decode("utf-8", "replace")) if rest else []

    def lines(self, block: bytes) -> list[str]:
        return self._lines(block.decode("utf-8", "replace"))

    def encode(self, block: bytes) -> tuple[str, int, str]:
        """The lines of `block` as JSON strings (see `json_strings`), their number, and the
        timestamp of the last one ("" when it has none).

        The usual block (clean lines of a sane length) is escaped and joined by a few replaces
        over the whole block, never line by line, on bytes while it is ASCII.
        """
        if block and _lines_fit(block):
            payload, count = "", 0
            if ascii_block_is_clean(block):
                escaped, count = _escape_ascii(block)
                payload = escaped.decode("ascii")
            else:
                text = block.decode("utf-8", "replace")
                if block_is_clean(text):
                    payload, count = _escape_text(text)
            if count:
                last = block[block.rfind(b"\n") + 1 :][:40].partition(b" ")[0].decode("ascii", "replace")
                return '"' + payload + '"', count, last if is_timestamp(last) else ""
        lines = self.lines(block)
        return json_strings(lines), len(lines), split_stamp(lines[-1])[0]

    def _lines(self, text: str) -> list[str]:
        lines = text.split("\n")
        # A timestamp and its space come before the text: a clean line fits in this.
        if block_is_clean(text) and max(map(len, lines)) <= MAX_LINE_CHARS + 40:
            return lines
        return [self._clean_line(line) for line in lines]

    def _clean_line(self, line: str) -> str:
        ts, text = split_stamp(line)
        return f"{ts} {self._clean(text)}" if ts else self._clean(line)


# --- the pipe --------------------------------------------------------------------------------------


class _Waker:
    """Wakes one event loop for the pipes that got items: one `call_soon_threadsafe` for all
    the pipes that filled while the loop was busy, not one per item or per pipe (hundreds of
    followed logs each print a line now and then)."""

    _by_loop: dict[asyncio.AbstractEventLoop, _Waker] = {}
    _registry_lock = threading.Lock()

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._pending: list[Pipe] = []
        self._scheduled = False

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Waker:
        with cls._registry_lock:
            waker = cls._by_loop.get(loop)
            if waker is None:
                for old in [old for old in cls._by_loop if old.is_closed()]:
                    del cls._by_loop[old]
                waker = cls._by_loop[loop] = cls(loop)
            return waker

    def wake(self, pipe: Pipe) -> bool:
        """From a thread: have `pipe` woken on the loop soon; False when the loop is closed."""
        with self._lock:
            self._pending.append(pipe)
            if self._scheduled:
                return True
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._run)
        except RuntimeError:  # the loop is closed: the server is shutting down
            with self._lock:
                self._scheduled = False
            return False
        return True

    def _run(self) -> None:
        with self._lock:
            pipes, self._pending = self._pending, []
            self._scheduled = False
        for pipe in pipes:
            pipe._wake()


class Pipe:
    """Items from threads or tasks to one event loop, with a bound on what may wait in between.

    `put` (from a thread) or `put_async` (from a task of the loop) takes a credit for a data
    item and waits while none is left; `get` (on the loop) gives the credit back once the
    consumer takes the item. Control items (a status, the end) pass without a credit so that
    they never wait behind data.

    The loop is woken once per batch, not once per item: a `put` while a wake-up is already on
    its way only adds to the queue, and one wake-up serves every pipe of the loop that got
    items meanwhile (each is a write to the loop's self-pipe and a turn of the loop; a flood,
    or hundreds of followed logs, would otherwise cost one per chunk).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, capacity: int) -> None:
        self._waker = _Waker.of(loop)
        self._items: deque[tuple[bool, Any]] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()  # for writers on the loop: a credit came back
        self._lock = threading.Lock()
        self._waking = False
        self._credits = threading.Semaphore(capacity)
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def put(self, item: Any, *, bounded: bool = True) -> bool:
        """From a thread; False once the pipe is closed (the reader should stop)."""
        if bounded:
            while not self._credits.acquire(timeout=0.25):
                if self._closed.is_set():
                    return False
        if self._closed.is_set():
            return False
        with self._lock:
            self._items.append((bounded, item))
            if self._waking:
                return True
            self._waking = True
        return self._waker.wake(self)

    async def put_async(self, item: Any) -> bool:
        """From a coroutine on the pipe's loop: a data item, waiting while no credit is left;
        False once the pipe is closed (the reader should stop)."""
        while not self._credits.acquire(blocking=False):
            if self._closed.is_set():
                return False
            self._room.clear()
            await self._room.wait()
        if self._closed.is_set():
            self._credits.release()
            return False
        self._items.append((True, item))
        self._ready.set()
        return True

    def put_nowait(self, item: Any) -> bool:
        """From the pipe's loop: a control item (a status), which needs no credit."""
        if self._closed.is_set():
            return False
        self._items.append((False, item))
        self._ready.set()
        return True

    def _wake(self) -> None:
        with self._lock:
            self._waking = False
        self._ready.set()

    def _take(self, entry: tuple[bool, Any]) -> Any:
        bounded, item = entry
        if bounded:
            self._credits.release()
            self._room.set()
        return item

    async def get(self) -> Any:
        while not self._items:
            self._ready.clear()
            if self._items:
                break
            await self._ready.wait()
        return self._take(self._items.popleft())

    async def wait_for_items(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until an item is waiting; True when one is."""
        if self._items:
            return True
        self._ready.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        return bool(self._items)

    def get_nowait(self) -> Any:
        """Raises `asyncio.QueueEmpty` when nothing is waiting."""
        try:
            entry = self._items.popleft()
        except IndexError:
            raise asyncio.QueueEmpty from None
        return self._take(entry)

    def empty(self) -> bool:
        return not self._items

    def close(self) -> None:
        """From the loop: writers stop (a thread blocked in `put` within a quarter second, a
        coroutine in `put_async` at once)."""
        self._closed.set()
        self._room.set()

    def wait_closed(self, timeout: float) -> bool:
        """From a thread: sleep up to `timeout`, waking early when the pipe closes."""
        return self._closed.wait(timeout)


async def join_threads(threads: Iterable[threading.Thread], timeout: float = JOIN_SECONDS) -> list[threading.Thread]:
    """Wait (without blocking the loop) for the threads to end; returns those still alive."""
    deadline = time.monotonic() + timeout
    alive = [thread for thread in threads if thread.is_alive()]
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
        alive = [thread for thread in alive if thread.is_alive()]
    for thread in alive:
        logger.warning("stream thread %s did not stop within %.1f s", thread.name, timeout)
    return alive


# --- log readers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LogOptions:
    container: str | None
    tail: int | None = DEFAULT_TAIL
    previous: bool = False
    since: str = ""  # the last timestamp the browser has: resume after it, without duplicates
    follow: bool = True
    colours: bool = True  # SGR kept for the viewer; a download is plain text
    encoded: bool = False  # lines handed over as JSON strings (`Lines.payload`), for the socket


@dataclass
class Lines:
    pod: str
    lines: list[str]  # "<timestamp> <text>"; empty when encoded
    size: int
    payload: str = ""  # when encoded: the lines as JSON strings (see `json_strings`)
    count: int = 0  # when encoded: the number of lines in `payload`


@dataclass
class Status:
    pod: str
    state: str  # streaming, reconnecting, ended, error
    message: str = ""


@dataclass
class Marker:
    """A line of the viewer's own between two pods' or two containers' logs."""

    pod: str
    kind: str  # "pod": the view moved on to another pod; "restart": the container restarted
    text: str


class LogReader:
    """One pod's log, followed on the event loop into a pipe, reopened after a restart or a break.

    A task of the consumer's loop, not a thread: the stream is read with aiohttp
    (`KubeClient.open_log_stream_async`), so a server following hundreds of logs runs no
    thread for them, and a flood is parsed (HTTP chunks included) in C as it arrives. When
    the pipe is full the task waits, stops reading, and TCP pushes back to the cluster.
    """

    def __init__(
        self, kube: KubeClient, namespace: str, pod: str, options: LogOptions, pipe: Pipe, *, container_id: str = ""
    ) -> None:
        self.kube, self.namespace, self.pod, self.options, self.pipe = kube, namespace, pod, options, pipe
        self._last = timestamp_key(options.since) if options.since else ""
        self._task: asyncio.Task[None] | None = None
        # The id of the container whose log this follows (from the pod list the caller read):
        # another one after the log ended is a restart, announced by a marker line before the
        # new container's first line.
        self._container_id = container_id
        # True while a stream is open: a follower that switches pods lets a pod that is
        # shutting down finish its last lines first.
        self.streaming = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"ale-log-{self.pod}")

    async def stop(self) -> None:
        """End the read in progress and the reader with it; returns once the stream is closed."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must end this reader, not leave the browser waiting
            logger.exception("log reader for %s/%s failed", self.namespace, self.pod)
            self.pipe.put_nowait(Status(self.pod, "error", "Reading the log failed."))

    async def _open(self, first: bool) -> AsyncLogStream:
        options = self.options
        if self._last:
            tail, since = None, seconds_since(self._last)
        else:
            tail, since = (options.tail if first else None), None
        return await self.kube.open_log_stream_async(
            self.namespace,
            self.pod,
            container=options.container,
            follow=options.follow and not options.previous,
            tail_lines=tail,
            since_seconds=since,
            # Always asked for: the browser shows or hides them, and a reopened stream drops the
            # lines it already sent by their timestamp.
            timestamps=True,
            previous=options.previous,
        )

    async def _loop(self) -> None:
        first, wait, failures = True, REOPEN_SECONDS, 0
        following = self.options.follow and not self.options.previous
        ended, waits = False, 0
        while not self.pipe.closed:
            if ended and not await self._check_container():
                self.pipe.put_nowait(Status(self.pod, "ended", "The pod is gone."))
                return
            try:
                stream = await self._open(first)
            except ClusterError as exc:
                if following and exc.status == 400 and "is waiting to start" in exc.user_message:
                    # Its container is not there yet (being created, its image pulled): a
                    # followed log waits for it rather than end.
                    waits += 1
                    self.pipe.put_nowait(Status(self.pod, "waiting", exc.user_message))
                    await asyncio.sleep(min(REOPEN_MAX_SECONDS, REOPEN_SECONDS * 2 ** min(waits, 4) / 4))
                    continue
                if not exc.retryable:
                    self.pipe.put_nowait(Status(self.pod, "ended" if exc.status == 404 else "error", exc.user_message))
                    return
                failures += 1
                self.pipe.put_nowait(Status(self.pod, "reconnecting", exc.user_message))
                await asyncio.sleep(min(REOPEN_MAX_SECONDS, REOPEN_SECONDS * 2**failures))
                continue
            if failures:
                self.pipe.put_nowait(Status(self.pod, "streaming", "Reconnected."))
                failures = 0
            if waits:
                self.pipe.put_nowait(Status(self.pod, "streaming", ""))
                waits = 0
            first, ended = False, False
            self.streaming = True
            try:
                async with stream:
                    got = await self._read(stream)
            finally:
                self.streaming = False
            if got is None:  # the pipe closed or the connection broke
                if self.pipe.closed:
                    return
                failures += 1
                self.pipe.put_nowait(Status(self.pod, "reconnecting", "The log stream broke; reconnecting…"))
                await asyncio.sleep(min(REOPEN_MAX_SECONDS, REOPEN_SECONDS * 2**failures))
                continue
            if not following:
                self.pipe.put_nowait(Status(self.pod, "ended", ""))
                return
            # A followed log ends when its container stops: look again (a restart brings a new
            # one), less and less often while nothing new appears.
            wait = REOPEN_SECONDS if got else min(REOPEN_MAX_SECONDS, wait * 2)
            ended = True
            await asyncio.sleep(wait)

    async def _check_container(self) -> bool:
        """Before a followed log is (re)opened: False when the pod is gone. When its container
        is another one than before (a restart), a marker goes first, so that the new
        container's lines come after it."""
        try:
            pod = await in_thread(self.kube.get, "v1", "Pod", self.pod, self.namespace)
        except ClusterError:
            return True  # the reopen says what is wrong, and retries
        if pod is None:
            return False
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        wanted = self.options.container
        status = next((s for s in statuses if wanted is None or s.get("name") == wanted), None)
        if status is None or not status.get("containerID"):
            return True
        known, self._container_id = self._container_id, status["containerID"]
        if not known or known == self._container_id:
            return True
        # The new container's start: running, or already ended (a quick crash).
        state, last = status.get("state") or {}, status.get("lastState") or {}
        runs = (state.get("running"), state.get("terminated"), last.get("terminated"))
        started = next((run.get("startedAt") or "" for run in runs if run), "")
        try:
            revision = await in_thread(pod_revision, self.kube, self.namespace, pod_info(pod).replica_set)
        except ClusterError:
            revision = ""
        restarts = int(status.get("restartCount") or 0)
        text = restart_marker(self.pod, status.get("name", ""), restarts, revision, started)
        await self.pipe.put_async(Marker(self.pod, "restart", text))
        return True

    async def _read(self, stream: AsyncLogStream) -> int | None:
        """Pass the stream's lines on; the number passed, or None when it broke or the pipe closed."""
        splitter = LineSplitter(keep_colours=self.options.colours)
        encoded = self.options.encoded
        following = self.options.follow and not self.options.previous
        loop = asyncio.get_running_loop()
        sent = 0
        last = self._last
        try:
            while True:
                started = loop.time()
                chunk = await stream.read_some()
                if not chunk:
                    break
                # A small read that had to wait for its bytes: a trickle. What arrives meanwhile
                # comes in one read; bytes already buffered are read at once, so a follower
                # never falls behind its log.
                if following and len(chunk) < TRICKLE_BYTES and loop.time() - started > 0.002:
                    await asyncio.sleep(TRICKLE_SECONDS)
                blocks, size = splitter.blocks(chunk)
                for block in blocks:
                    if encoded and not (last and self._first_key(block) <= last):
                        payload, count, stamp = splitter.encode(block)
                        item = Lines(self.pod, [], size, payload, count)
                    else:
                        lines = splitter.lines(block)
                        if last and timestamp_key(split_stamp(lines[0])[0]) <= last:
                            # Resumed: skip what the browser already has (same timestamp or older).
                            lines = [line for line in lines if timestamp_key(split_stamp(line)[0]) > last]
                        if not lines:
                            size = 0
                            continue
                        count, stamp = len(lines), split_stamp(lines[-1])[0]
                        item = Lines(self.pod, [], size, json_strings(lines), count) if encoded else Lines(self.pod, lines, size)
                    # The size of the chunk goes with its first block (the second is rare).
                    size = 0
                    if not await self.pipe.put_async(item):
                        return None
                    sent += count
                    if stamp:
                        last = self._last = timestamp_key(stamp)
            tail = splitter.flush()
            if tail and not (last and timestamp_key(split_stamp(tail[0])[0]) <= last):
                size = sum(map(len, tail))
                item = Lines(self.pod, [], size, json_strings(tail), len(tail)) if encoded else Lines(self.pod, tail, size)
                if not await self.pipe.put_async(item):
                    return None
                sent += len(tail)
                stamp = split_stamp(tail[-1])[0]
                if stamp:
                    self._last = timestamp_key(stamp)
        except ClusterError:
            return None
        return sent

    @staticmethod
    def _first_key(block: bytes) -> str:
        stamp = block[:40].partition(b" ")[0].decode("ascii", "replace")
        return timestamp_key(stamp) if is_timestamp(stamp) else ""


# --- exec sessions -------------------------------------------------------------------------------


@dataclass
class Output:
    data: bytes


@dataclass
class Opened:
    pod: str
    container: str


@dataclass
class Exited:
    code: int | None
    message: str = ""
    failed: bool = False


class ExecBridge:
    """A shell in a container: a thread opens and reads the session, another writes to it.

    Writes have a thread of their own so that neither a slow send to the cluster nor the close
    handshake (up to a second) ever runs on the event loop.
    """

    READ_TIMEOUT = 0.5

    def __init__(
        self, kube: KubeClient, namespace: str, pod: str, container: str, pipe: Pipe, *, cols: int, rows: int
    ) -> None:
        self.kube, self.namespace, self.pod, self.container, self.pipe = kube, namespace, pod, container, pipe
        self._size = (cols, rows)
        self._session: ExecSession | None = None
        self._ready = threading.Event()
        self._writes: queue.SimpleQueue[tuple[str, Any] | None] = queue.SimpleQueue()
        self._stopped = threading.Event()
        self.reader = threading.Thread(target=self._read, name=f"ale-exec-read-{pod}", daemon=True)
        self.writer = threading.Thread(target=self._write, name=f"ale-exec-write-{pod}", daemon=True)

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.reader, self.writer]

    def start(self) -> None:
        self.reader.start()
        self.writer.start()

    def write(self, data: str | bytes) -> None:
        self._writes.put(("stdin", data))

    def resize(self, cols: int, rows: int) -> None:
        self._writes.put(("resize", (cols, rows)))

    def stop(self) -> None:
        """From the loop: close the session (in the writer thread) and end both threads."""
        self._stopped.set()
        self._writes.put(None)

    def _read(self) -> None:
        try:
            self._read_session()
        except Exception:
            logger.exception("exec reader for %s/%s failed", self.namespace, self.pod)
            self.pipe.put(Exited(None, "The terminal failed.", failed=True), bounded=False)
        finally:
            self._ready.set()
            self._stopped.set()
            self._writes.put(None)

    def _read_session(self) -> None:
        try:
            session = self.kube.open_exec(self.namespace, self.pod, container=self.container, command=SHELL_COMMAND)
        except ClusterError as exc:
            self.pipe.put(Exited(None, exc.user_message, failed=True), bounded=False)
            return
        self._session = session
        self._ready.set()
        if self._stopped.is_set():
            return
        cols, rows = self._size
        try:
            session.resize(cols, rows)
        except ClusterError:
            pass
        self.pipe.put(Opened(self.pod, self.container), bounded=False)
        while not self._stopped.is_set():
            try:
                chunks = session.read(timeout=self.READ_TIMEOUT)
            except ClusterError as exc:
                if not self._stopped.is_set():
                    self.pipe.put(Exited(None, exc.user_message, failed=True), bounded=False)
                return
            for _, data in chunks:
                if not self.pipe.put(Output(data)):
                    return
            if not chunks and not session.is_open():
                if not self._stopped.is_set():
                    code = session.returncode
                    message = "" if code is not None else self._error_message(session)
                    self.pipe.put(Exited(code, message), bounded=False)
                return

    @staticmethod
    def _error_message(session: ExecSession) -> str:
        """Why a session ended without an exit status: the runtime's message on the error channel
        (the official client cannot parse a Status that is not an exit, e.g. a command that does
        not exist in the image, and gives no return code for it)."""
        # `ExecSession.read` hands out stdout and stderr only; the error channel (3) stays in the
        # official client's buffer, where this reads it.
        raw = session._ws._channels.get(3, b"")
        try:
            status = json.loads(raw)
            return str(status.get("message") or "")[:500]
        except (ValueError, TypeError, AttributeError):
            return ""

    def _write(self) -> None:
        self._ready.wait()
        while True:
            op = self._writes.get()
            session = self._session
            if op is None or session is None:
                break
            kind, value = op
            try:
                if kind == "stdin":
                    session.write_stdin(value)
                else:
                    session.resize(*value)
            except ClusterError:
                break
        if self._session is not None:
            self._session.close()
