"""A pod's log followed on the event loop into a pipe, reopened after a restart or a break."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from clusters.client import KubeClient
from clusters.errors import ClusterError
from clusters.streams import AsyncLogStream, in_thread
from services.streams.escaping import LineSplitter, json_strings
from services.streams.pipe import Pipe
from services.streams.pods import pod_info, pod_revision, restart_marker
from services.streams.timestamps import is_timestamp, seconds_since, split_stamp, timestamp_key

logger = logging.getLogger(__name__)

DEFAULT_TAIL = 500
MAX_TAIL = 100_000
# A reader whose log ended (the container stopped, and is perhaps restarting) looks again after
# this long, then backs off up to the cap while nothing new comes.
REOPEN_SECONDS = 1.0
REOPEN_MAX_SECONDS = 10.0

# A followed log that trickles (a read brought less than this) is read again only after this
# long: what arrives meanwhile comes in one read. Hundreds of followers would otherwise each cost
# the event loop a read, a split and a pipe hand-over for every line printed.
TRICKLE_BYTES = 4096
TRICKLE_SECONDS = 0.05


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
