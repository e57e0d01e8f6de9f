"""Long-lived responses of the API server: a pod log (on a thread, or on the event loop with
aiohttp) and a watch, read in chunks and closed from either side."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
import urllib3

from clusters.errors import TRANSPORT_ERRORS, ClusterError, http_error, transport_error

logger = logging.getLogger(__name__)

T = TypeVar("T")

_CHUNK = 64 * 1024
# What one read of a log on the event loop hands over at most: a flood goes in few, big pieces.
ASYNC_CHUNK = 256 * 1024


async def in_thread(function: Callable[..., T], *args: Any) -> T:
    """Run a blocking call of the client (a pod list, building a client, a credential plugin) in
    a short-lived thread of its own.

    Not `sync_to_async` (its one shared thread serialises every database call of the process)
    and not the default executor (its threads outlive the call, and a socket must leave none).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(setter: Callable[[Any], None], value: Any) -> None:
        if not future.done():
            setter(value)

    def run() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # handed to the awaiting coroutine, raised there
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, future.set_exception, exc)
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, future.set_result, result)

    threading.Thread(target=run, name=f"ale-call-{getattr(function, '__name__', 'call')}", daemon=True).start()
    return await future


class _RawStream:
    """A streaming urllib3 response that one thread reads and any thread may close.

    `close()` shuts the socket down for reading, which wakes a reader blocked in `recv`, and
    the connection goes back to the pool closed (a half-read HTTP response cannot be reused).
    """

    def __init__(self, response: urllib3.HTTPResponse, cluster: str, what: str) -> None:
        self._response = response
        self._cluster = cluster
        self._what = what
        self._lock = threading.Lock()
        self._closed = False
        self._stopped = False  # closed by close(), not by the end of the response
        self._reading = False
        self._released = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _read_some(self) -> bytes:
        """Up to 64 KiB as soon as any bytes arrive; b"" at the end or after close()."""
        with self._lock:
            if self._closed:
                return b""
            self._reading = True
        error: BaseException | None = None
        try:
            data = self._response.read1(_CHUNK)
        except (*TRANSPORT_ERRORS, ValueError, AttributeError) as exc:
            # ValueError/AttributeError: the file was closed under the read by close().
            data, error = b"", exc
        with self._lock:
            self._reading = False
            closed_meanwhile = self._closed
            if not data or error is not None:
                self._closed = True
        if data and not closed_meanwhile:
            return data
        self._release()
        if error is not None and not closed_meanwhile:
            if isinstance(error, TRANSPORT_ERRORS):
                raise transport_error(self._cluster, error, what=self._what) from error
            raise error
        return b""

    def _release(self) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        try:
            self._response.close()
        finally:
            self._response.release_conn()

    def close(self) -> None:
        """Stop the stream from any thread; idempotent."""
        with self._lock:
            self._closed = self._stopped = True
            if self._reading:
                # Under the lock, so the reader cannot have released the connection (which
                # another request may then reuse) before the shutdown reaches its socket.
                try:
                    self._response.shutdown()
                except (ValueError, RuntimeError, OSError):
                    pass
                return  # the reader releases the connection as its read returns
        self._release()

    def __enter__(self) -> _RawStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class LogStream(_RawStream):
    """A pod log being read: `iter_chunks()` in one thread, `close()` from any."""

    def iter_chunks(self) -> Iterator[bytes]:
        """Bytes as the server sends them, until the log ends or `close()` is called.

        Raises `ClusterError` (retryable) when the connection breaks mid-stream.
        """
        while True:
            data = self._read_some()
            if not data:
                return
            yield data


@dataclass(frozen=True)
class LogQuery:
    """What to read of a pod's log: the options of `GET /api/v1/namespaces/<ns>/pods/<pod>/log`."""

    container: str | None = None
    follow: bool = True
    tail_lines: int | None = None
    since_seconds: int | None = None
    timestamps: bool = False
    previous: bool = False
    limit_bytes: int | None = None

    def params(self) -> builtins.list[tuple[str, Any]]:
        return [
            ("container", self.container),
            ("follow", "true" if self.follow else None),
            ("tailLines", self.tail_lines),
            ("sinceSeconds", self.since_seconds),
            ("timestamps", "true" if self.timestamps else None),
            ("previous", "true" if self.previous else None),
            ("limitBytes", self.limit_bytes),
        ]


def log_path(namespace: str, pod: str) -> str:
    return f"/api/v1/namespaces/{quote(namespace, safe='')}/pods/{quote(pod, safe='')}/log"


class AsyncLogStream:
    """A pod log read on an event loop: `read_some()` and `close()` from coroutines of that loop."""

    def __init__(self, session: aiohttp.ClientSession, response: aiohttp.ClientResponse, cluster: str, what: str) -> None:
        self._session = session
        self._response = response
        self._cluster = cluster
        self._what = what
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def read_some(self) -> bytes:
        """Up to 256 KiB of what arrived (waiting for something when nothing has); b"" at the end
        or once closed. Raises `ClusterError` (retryable) when the connection breaks mid-stream."""
        if self._closed:
            return b""
        try:
            data = await self._response.content.read(ASYNC_CHUNK)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            closed_meanwhile = self._closed
            await self.close()
            if closed_meanwhile:
                return b""
            raise transport_error(self._cluster, exc, what=self._what) from exc
        if not data:
            await self.close()
        return data

    async def close(self) -> None:
        """Idempotent; the connection is dropped (a half-read response cannot be reused)."""
        if self._closed:
            return
        self._closed = True
        self._response.close()
        await self._session.close()

    async def __aenter__(self) -> AsyncLogStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class WatchStream(_RawStream):
    """A watch response as an iterator of `(type, object)`, closable from any thread.

    Yields ADDED / MODIFIED / DELETED / BOOKMARK events; ends when the server closes the watch
    (its `timeoutSeconds`) or on `close()`. An ERROR event is raised as `ClusterError`
    (410 `expired` when the resourceVersion is too old).
    """

    def __init__(self, response: urllib3.HTTPResponse, cluster: str, what: str, api_version: str, kind: str) -> None:
        super().__init__(response, cluster, what)
        self._buffer = b""
        self._api_version = api_version
        self._kind = kind

    def __iter__(self) -> WatchStream:
        return self

    def __next__(self) -> tuple[str, dict]:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line, self._buffer = self._buffer[:newline], self._buffer[newline + 1 :]
                if line.strip():
                    return self._event(line)
                continue
            data = self._read_some()
            if not data:
                if self._buffer.strip() and not self._stopped:
                    line, self._buffer = self._buffer, b""
                    return self._event(line)
                raise StopIteration
            self._buffer += data

    def _event(self, line: bytes) -> tuple[str, dict]:
        try:
            # orjson: several times faster than json on pods (a storm is tens of MB of them).
            event = orjson.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError) as exc:
            self.close()
            raise ClusterError(
                f"{self._what}: undecodable watch event {line[:200]!r}",
                retryable=True,
                reason="BadWatchEvent",
                user_message=f"The cluster '{self._cluster}' sent an unreadable update.",
            ) from exc
        if kind == "ERROR":
            self.close()
            code = obj.get("code") if isinstance(obj, dict) else None
            raise http_error(
                self._cluster, int(code or 500), json.dumps(obj).encode(), None, what=self._what
            )
        if isinstance(obj, dict) and kind != "BOOKMARK":
            obj.setdefault("apiVersion", self._api_version)
            obj.setdefault("kind", self._kind)
        return kind, obj
