"""The one module in ale that talks to Kubernetes.

Everything goes through the official `kubernetes` client (its `ApiClient` for REST calls, its
`stream()` for exec) and comes back as plain dicts. Every failure, whatever raised it, leaves
this module as a `ClusterError` that says whether trying again can help (`retryable`) and what
a user should read (`user_message`); callers never see urllib3, websocket or ApiException types.

`client_for(cluster)` hands out one `KubeClient` per cluster and configuration; a client is
thread-safe and meant to be shared by Celery threads, stream consumers and the watcher.

One request is also made on an event loop: a followed pod log for the websocket consumers
(`open_log_stream_async`), sent with aiohttp, from the same configuration and with the same
headers the official client would send, so that hundreds of followed logs cost the server no
thread each.
Nothing here touches the database: a `Cluster` instance is only read for its fields.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import email.utils
import hashlib
import json
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

import aiohttp
import urllib3
import yaml
from django.conf import settings
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import is_socks_proxy_url, should_bypass_proxies
from kubernetes.config.config_exception import ConfigException
from kubernetes.stream import stream as k8s_stream
from kubernetes.stream import ws_client

if TYPE_CHECKING:
    from clusters.models import Cluster

logger = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = [
    "AsyncLogStream",
    "ClusterError",
    "ExecSession",
    "KubeClient",
    "LogQuery",
    "LogStream",
    "WatchStream",
    "client_for",
    "configuration_from_kubeconfig",
    "forget_clients",
    "in_thread",
]

DEFAULT_POOL_SIZE = 16
DEFAULT_REQUEST_TIMEOUT = (5.0, 30.0)
# A watch that stays silent this long past its own server-side timeout is a dead connection.
WATCH_READ_GRACE = 15.0
_CHUNK = 64 * 1024
# What one read of a log on the event loop hands over at most: a flood goes in few, big pieces.
_ASYNC_CHUNK = 256 * 1024

# Statuses where trying the same request again later can succeed.
_RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class ClusterError(Exception):
    """A Kubernetes call that failed.

    `retryable` is True when the same call may succeed later (connection errors, timeouts, 429,
    5xx, a write conflict) and False when repeating it cannot help (400, 401, 403, 404, 422...).
    `status` is the HTTP status (None when no answer came), `reason` the Kubernetes reason
    (`Invalid`, `Forbidden`, `Expired`...) or a short code (`Unreachable`, `Timeout`),
    `retry_after` the server's Retry-After in seconds, and `user_message` the sentence to show
    a user. `str(error)` is the technical description for logs.

    A 410 (`expired`) means a watch or list continuation used a resourceVersion the server no
    longer has: it is retryable, but only from a fresh list.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
        user_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.user_message = user_message or message

    @property
    def expired(self) -> bool:
        return self.status == 410

    def __repr__(self) -> str:
        return (
            f"ClusterError({str(self)!r}, status={self.status!r}, reason={self.reason!r}, "
            f"retryable={self.retryable!r})"
        )


# --- kinds ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    namespaced: bool


def _kind(api_version: str, plural: str, namespaced: bool = True) -> _Kind:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return _Kind(prefix, plural, namespaced)


# The kinds ale reads and writes. A table instead of discovery: these never move, and a lookup
# per call would double the traffic to a slow cluster.
KINDS: dict[tuple[str, str], _Kind] = {
    ("v1", "Namespace"): _kind("v1", "namespaces", namespaced=False),
    ("v1", "Pod"): _kind("v1", "pods"),
    ("v1", "Service"): _kind("v1", "services"),
    ("v1", "Secret"): _kind("v1", "secrets"),
    ("v1", "ConfigMap"): _kind("v1", "configmaps"),
    ("v1", "Event"): _kind("v1", "events"),
    ("v1", "ResourceQuota"): _kind("v1", "resourcequotas"),
    ("v1", "ServiceAccount"): _kind("v1", "serviceaccounts"),
    ("v1", "PersistentVolumeClaim"): _kind("v1", "persistentvolumeclaims"),
    ("apps/v1", "Deployment"): _kind("apps/v1", "deployments"),
    ("apps/v1", "ReplicaSet"): _kind("apps/v1", "replicasets"),
    ("batch/v1", "Job"): _kind("batch/v1", "jobs"),
    ("networking.k8s.io/v1", "NetworkPolicy"): _kind("networking.k8s.io/v1", "networkpolicies"),
    ("networking.k8s.io/v1", "Ingress"): _kind("networking.k8s.io/v1", "ingresses"),
    ("events.k8s.io/v1", "Event"): _kind("events.k8s.io/v1", "events"),
    ("coordination.k8s.io/v1", "Lease"): _kind("coordination.k8s.io/v1", "leases"),
}


def _lookup(api_version: str, kind: str) -> _Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"ale does not manage {kind} ({api_version})") from None


def _collection_path(info: _Kind, namespace: str | None) -> str:
    """A namespaced kind without a namespace means all namespaces (for list and watch)."""
    if info.namespaced and namespace:
        return f"{info.prefix}/namespaces/{quote(namespace, safe='')}/{info.plural}"
    return f"{info.prefix}/{info.plural}"


def _object_path(info: _Kind, name: str, namespace: str | None) -> str:
    if info.namespaced and not namespace:
        raise ValueError(f"{info.plural} are namespaced: a namespace is required")
    return f"{_collection_path(info, namespace)}/{quote(name, safe='')}"


# --- errors --------------------------------------------------------------------------------------


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _status_from_body(body: bytes | str | None) -> dict:
    if not body:
        return {}
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return {}
    return data if isinstance(data, dict) and data.get("kind") == "Status" else {}


def _with_causes(message: str, status_obj: dict) -> str:
    """The Status message, plus any field causes it does not already spell out."""
    causes = (status_obj.get("details") or {}).get("causes") or []
    extra = []
    for cause in causes:
        text = cause.get("message") or ""
        field = cause.get("field") or ""
        line = f"{field}: {text}" if field and text else (field or text)
        if line and text not in message:
            extra.append(line)
    if extra:
        return f"{message}: {'; '.join(extra)}" if message else "; ".join(extra)
    return message


def _http_error(
    cluster: str,
    status: int,
    body: bytes | str | None,
    headers: Any,
    *,
    what: str,
    conflict_retryable: bool = False,
) -> ClusterError:
    status_obj = _status_from_body(body)
    reason = status_obj.get("reason") or _DEFAULT_REASONS.get(status, "")
    message = status_obj.get("message") or ""
    if not message and isinstance(body, (bytes, str)) and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        message = text.strip()[:500]
    retry_after = _parse_retry_after(headers.get("Retry-After") if headers is not None else None)

    if status == 410:
        retryable = True
    elif status == 409:
        # On a write, a conflict means someone else changed the object between read and write
        # (or held a field); applying again re-reads it. Elsewhere it is an answer, not a hiccup.
        retryable = conflict_retryable
    else:
        retryable = status in _RETRYABLE_STATUSES

    if status == 422:
        user_message = _with_causes(message, status_obj) or f"The cluster '{cluster}' rejected the change."
    elif status == 401:
        user_message = f"The cluster '{cluster}' did not accept ale's credentials."
    elif status == 429:
        user_message = f"The cluster '{cluster}' is busy; ale will try again."
    elif status in (500, 502, 503, 504):
        user_message = f"The cluster '{cluster}' had a temporary failure" + (f": {message}" if message else ".")
    else:
        user_message = message or f"The cluster '{cluster}' answered {status} {reason}".strip()
    return ClusterError(
        f"{what}: {status} {reason}: {message}".rstrip(": "),
        retryable=retryable,
        status=status,
        reason=reason,
        retry_after=retry_after,
        user_message=user_message,
    )


_DEFAULT_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    408: "Timeout",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _transport_error(cluster: str, exc: BaseException, *, what: str) -> ClusterError:
    """Map a failure below HTTP (socket, TLS, timeout, a cut stream) to a retryable error."""
    timed_out = isinstance(exc, (urllib3.exceptions.ReadTimeoutError, TimeoutError, socket.timeout)) or (
        isinstance(exc, urllib3.exceptions.TimeoutError)
        and not isinstance(exc, urllib3.exceptions.NewConnectionError)
        and not isinstance(exc, urllib3.exceptions.ConnectTimeoutError)
    )
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        return _transport_error(cluster, exc.reason, what=what)
    if timed_out:
        return ClusterError(
            f"{what}: timed out: {exc}",
            retryable=True,
            reason="Timeout",
            user_message=f"The cluster '{cluster}' did not answer in time.",
        )
    return ClusterError(
        f"{what}: {type(exc).__name__}: {exc}",
        retryable=True,
        reason="Unreachable",
        user_message=f"The cluster '{cluster}' cannot be reached.",
    )


_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError, OSError)


# --- configuration -------------------------------------------------------------------------------


def _tune(configuration: k8s.Configuration, pool_size: int) -> k8s.Configuration:
    configuration.connection_pool_maxsize = pool_size
    # Errors must surface once: the caller (a Celery retry, the watcher's backoff) decides when
    # to try again, with jitter and a cap that urllib3's own retries would multiply.
    configuration.retries = False
    configuration.client_go_retries = False
    return configuration


def configuration_from_kubeconfig(
    kubeconfig: str | dict, *, context: str | None = None, base_path: str | None = None
) -> k8s.Configuration:
    """A client `Configuration` from kubeconfig YAML text (or its parsed dict).

    `base_path` resolves relative certificate paths (the kubeconfig file's directory). Raises a
    permanent `ClusterError` when the kubeconfig cannot be used.
    """
    try:
        data = yaml.safe_load(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
        if not isinstance(data, dict):
            raise ConfigException("the kubeconfig is not a YAML mapping")
        configuration = k8s.Configuration()
        loader = k8s_config.kube_config.KubeConfigLoader(
            config_dict=data,
            active_context=context or None,
            config_base_path=base_path or "",
        )
        loader.load_and_set(configuration)
    except (yaml.YAMLError, ConfigException, KeyError, TypeError, ValueError) as exc:
        raise ClusterError(
            f"invalid kubeconfig: {exc}",
            retryable=False,
            reason="InvalidConfiguration",
            user_message=f"The cluster's kubeconfig cannot be used: {exc}",
        ) from exc
    return configuration


def _settings_knobs() -> tuple[int, tuple[float, float]]:
    pool_size = int(getattr(settings, "KUBE_POOL_SIZE", DEFAULT_POOL_SIZE))
    timeout = getattr(settings, "KUBE_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)
    if isinstance(timeout, (int, float)):
        timeout = (float(timeout), float(timeout))
    connect, read = timeout
    return pool_size, (float(connect), float(read))


def _cluster_label(cluster: Cluster) -> str:
    return getattr(cluster, "label", None) or cluster.name


def _fingerprint(cluster: Cluster) -> str:
    """What the client for `cluster` is built from; a change means a new client."""
    pool_size, timeout = _settings_knobs()
    parts: builtins.list[str] = [cluster.connection, _cluster_label(cluster), str(pool_size), repr(timeout)]
    if cluster.connection == "devcluster":
        path = str(settings.DEVCLUSTER_KUBECONFIG)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            parts.append(f"{path}:missing")
        else:
            # `make run` rewrites the file with a new port each start: follow it.
            parts.append(f"{path}:{stat.st_mtime_ns}:{stat.st_size}:{stat.st_ino}")
    elif cluster.connection == "kubeconfig":
        parts += [cluster.context or "", cluster.kubeconfig or ""]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _configuration_for(cluster: Cluster) -> k8s.Configuration:
    label = _cluster_label(cluster)
    if cluster.connection == "devcluster":
        path = str(settings.DEVCLUSTER_KUBECONFIG)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError as exc:
            # The devcluster writes this file when it starts: until then it is just not up.
            raise ClusterError(
                f"devcluster kubeconfig {path} does not exist",
                retryable=True,
                reason="Unreachable",
                user_message=f"The cluster '{label}' cannot be reached.",
            ) from exc
        return configuration_from_kubeconfig(text, context=cluster.context or None, base_path=os.path.dirname(path))
    if cluster.connection == "kubeconfig":
        return configuration_from_kubeconfig(cluster.kubeconfig, context=cluster.context or None)
    if cluster.connection == "in_cluster":
        configuration = k8s.Configuration()
        try:
            # Installs a hook that re-reads the projected service-account token as it rotates.
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ClusterError(
                f"in-cluster configuration unavailable: {exc}",
                retryable=False,
                reason="InvalidConfiguration",
                user_message=f"The cluster '{label}' is set to use ale's service account, but ale is not running inside it.",
            ) from exc
        return configuration
    raise ValueError(f"unknown cluster connection {cluster.connection!r}")


_clients: dict[Any, tuple[str, KubeClient]] = {}
_clients_lock = threading.Lock()


def _forget_after_fork() -> None:
    # A forked Celery worker must not share the parent's sockets, nor a lock held at fork time.
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def client_for(cluster: Cluster) -> KubeClient:
    """The shared client for `cluster`, rebuilt when its configuration (or the devcluster's
    kubeconfig file) changes. Raises `ClusterError` when the configuration is unusable."""
    key = cluster.pk if cluster.pk is not None else ("unsaved", cluster.name)
    fingerprint = _fingerprint(cluster)
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    # Built outside the lock: loading a kubeconfig may run an exec credential plugin.
    pool_size, timeout = _settings_knobs()
    fresh = KubeClient(
        _configuration_for(cluster), name=_cluster_label(cluster), pool_size=pool_size, request_timeout=timeout
    )
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None and cached[0] == fingerprint:
            winner, loser = cached[1], fresh
        else:
            _clients[key] = (fingerprint, fresh)
            winner, loser = fresh, (cached[1] if cached else None)
    if loser is not None:
        # Only idle connections close; requests in flight on the old client finish normally.
        loser.close()
    return winner


def forget_clients() -> None:
    """Drop every cached client (tests, and a worker that forked after using one)."""
    with _clients_lock:
        entries = builtins.list(_clients.values())
        _clients.clear()
    for _, kube in entries:
        kube.close()


# --- streams -------------------------------------------------------------------------------------


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
        except (*_TRANSPORT_ERRORS, ValueError, AttributeError) as exc:
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
            if isinstance(error, _TRANSPORT_ERRORS):
                raise _transport_error(self._cluster, error, what=self._what) from error
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


def _log_path(namespace: str, pod: str) -> str:
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
            data = await self._response.content.read(_ASYNC_CHUNK)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            closed_meanwhile = self._closed
            await self.close()
            if closed_meanwhile:
                return b""
            raise _transport_error(self._cluster, exc, what=self._what) from exc
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
            event = json.loads(line)
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
            raise _http_error(
                self._cluster, int(code or 500), json.dumps(obj).encode(), None, what=self._what
            )
        if isinstance(obj, dict) and kind != "BOOKMARK":
            obj.setdefault("apiVersion", self._api_version)
            obj.setdefault("kind", self._kind)
        return kind, obj


class ExecSession:
    """A command running in a container, over the Kubernetes exec websocket.

    One thread calls `read()`; others may call `write_stdin()`, `resize()` and `close()`.
    """

    def __init__(self, ws: ws_client.WSClient, cluster: str, what: str) -> None:
        self._ws = ws
        self._cluster = cluster
        self._what = what
        self._closed = False
        # The WSClient copies all output into a buffer for `read_all()`; a terminal left open
        # for hours would keep every byte in memory.
        ws._all = ws_client._IgnoredIO()

    def write_stdin(self, data: bytes | str) -> None:
        if isinstance(data, str):
            data = data.encode("utf-8")
        self._send(ws_client.STDIN_CHANNEL, data)

    def resize(self, cols: int, rows: int) -> None:
        self._send(ws_client.RESIZE_CHANNEL, json.dumps({"Width": int(cols), "Height": int(rows)}).encode())

    def _send(self, channel: int, data: bytes) -> None:
        if self._closed:
            raise ClusterError(
                f"{self._what}: the session is closed", retryable=False, reason="Closed",
                user_message="The terminal session has ended.",
            )
        try:
            self._ws.write_channel(channel, data)
        except Exception as exc:  # websocket-client raises its own types and OSError
            raise _transport_error(self._cluster, exc, what=self._what) from exc

    def read(self, timeout: float = 0) -> builtins.list[tuple[int, bytes]]:
        """Output received within `timeout` seconds, as `(channel, bytes)` (1 stdout, 2 stderr).

        Returns [] when nothing came; once the command ended, `is_open()` is False and
        `returncode` is set.
        """
        if self._closed:
            return []
        try:
            self._ws.update(timeout=timeout)
        except Exception as exc:
            if self._closed:
                return []
            self._ws._connected = False
            raise _transport_error(self._cluster, exc, what=self._what) from exc
        chunks = []
        for channel in (ws_client.STDOUT_CHANNEL, ws_client.STDERR_CHANNEL):
            data = self._ws._channels.pop(channel, b"")
            if data:
                chunks.append((channel, data))
        return chunks

    def is_open(self) -> bool:
        return not self._closed and self._ws.is_open()

    @property
    def returncode(self) -> int | None:
        """The exit status once the command has ended (None while it runs, or if unknown)."""
        if self._ws.is_open():
            return None
        try:
            return self._ws.returncode
        except (TypeError, KeyError, IndexError, ValueError, yaml.YAMLError):
            return None

    def close(self) -> None:
        """End the session from any thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        sock = self._ws.sock
        try:
            # A short close handshake; then the socket goes regardless.
            self._ws.close(timeout=1)
        except Exception:
            pass
        try:
            if sock is not None:
                sock.shutdown()
        except Exception:
            pass

    def __enter__(self) -> ExecSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# --- the client ----------------------------------------------------------------------------------


class KubeClient:
    """A thread-safe client for one cluster, dict in and dict out."""

    def __init__(
        self,
        configuration: k8s.Configuration,
        *,
        name: str = "cluster",
        pool_size: int = DEFAULT_POOL_SIZE,
        request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    ) -> None:
        self.name = name
        self.configuration = _tune(configuration, pool_size)
        self.request_timeout = request_timeout
        self.api_client = k8s.ApiClient(self.configuration)
        self.api_client.user_agent = "ale"

    @classmethod
    def from_kubeconfig(
        cls,
        kubeconfig: str | dict,
        *,
        context: str | None = None,
        name: str = "cluster",
        pool_size: int = DEFAULT_POOL_SIZE,
        request_timeout: tuple[float, float] = DEFAULT_REQUEST_TIMEOUT,
    ) -> KubeClient:
        return cls(
            configuration_from_kubeconfig(kubeconfig, context=context),
            name=name,
            pool_size=pool_size,
            request_timeout=request_timeout,
        )

    def close(self) -> None:
        """Close idle pooled connections; responses still being read are unaffected."""
        self.api_client.rest_client.close()

    def __repr__(self) -> str:
        return f"<KubeClient {self.name} {self.configuration.host}>"

    # -- transport

    def _send(
        self,
        method: str,
        path: str,
        *,
        query: builtins.list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: Any = None,
    ) -> urllib3.HTTPResponse:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        what = f"{method} {path}"
        try:
            request = self.api_client.param_serialize(
                method=method,
                resource_path=path,
                query_params=[(k, v) for k, v in (query or []) if v is not None],
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            response = self.api_client.call_api(*request, _request_timeout=timeout or self.request_timeout)
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(self.name, exc, what=what) from exc
        except ApiException as exc:
            # The REST layer wraps TLS failures as status 0.
            raise ClusterError(
                f"{what}: {exc.reason}",
                retryable=True,
                reason="Unreachable",
                user_message=f"The cluster '{self.name}' cannot be reached.",
            ) from exc
        return response.response

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: builtins.list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str | None = None,
        conflict_retryable: bool = False,
    ) -> dict:
        what = f"{method} {path}"
        response = self._send(method, path, query=query, body=body, content_type=content_type)
        try:
            data = response.data
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(self.name, exc, what=what) from exc
        finally:
            response.release_conn()
        if not 200 <= response.status < 300:
            raise _http_error(
                self.name, response.status, data, response.headers, what=what, conflict_retryable=conflict_retryable
            )
        if not data:
            return {}
        try:
            return json.loads(data)
        except ValueError as exc:
            raise ClusterError(
                f"{what}: response is not JSON: {data[:200]!r}",
                retryable=True,
                reason="BadResponse",
                user_message=f"The cluster '{self.name}' sent an unreadable answer.",
            ) from exc

    # -- objects

    def apply(
        self, manifests: Iterable[dict], *, field_manager: str = "ale", force: bool = True
    ) -> builtins.list[dict]:
        """Server-side apply each manifest in the given order; returns the objects as stored.

        Stops at the first failure (later manifests often depend on earlier ones, e.g. the
        Namespace). A conflict (409) is retryable: applying again converges.
        """
        results = []
        for manifest in manifests:
            api_version, kind = manifest.get("apiVersion", ""), manifest.get("kind", "")
            info = _lookup(api_version, kind)
            metadata = manifest.get("metadata") or {}
            path = _object_path(info, metadata.get("name", ""), metadata.get("namespace"))
            results.append(
                self._request(
                    "PATCH",
                    path,
                    query=[("fieldManager", field_manager), ("force", "true" if force else None)],
                    # JSON is YAML: the apply content type accepts it unchanged.
                    body=json.dumps(manifest),
                    content_type="application/apply-patch+yaml",
                    conflict_retryable=True,
                )
            )
        return results

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        """The object, or None when it does not exist."""
        info = _lookup(api_version, kind)
        try:
            return self._request("GET", _object_path(info, name, namespace))
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, manifest: dict) -> dict:
        """Create the object; an existing one is a 409 `ClusterError` (AlreadyExists), which
        callers racing for the same name (the watcher's Lease) read as "someone was first"."""
        info = _lookup(manifest.get("apiVersion", ""), manifest.get("kind", ""))
        metadata = manifest.get("metadata") or {}
        return self._request(
            "POST", _collection_path(info, metadata.get("namespace")), body=manifest, content_type="application/json"
        )

    def replace(self, manifest: dict) -> dict:
        """Replace the object (PUT). With `metadata.resourceVersion` set, a write by anyone
        else since that version is a 409 `ClusterError`: a compare-and-swap."""
        info = _lookup(manifest.get("apiVersion", ""), manifest.get("kind", ""))
        metadata = manifest.get("metadata") or {}
        return self._request(
            "PUT",
            _object_path(info, metadata.get("name", ""), metadata.get("namespace")),
            body=manifest,
            content_type="application/json",
        )

    def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
    ) -> tuple[builtins.list[dict], str]:
        """All matching objects (following `continue` pages of `limit` each) and the list's
        resourceVersion, from which a watch can start. Items carry apiVersion and kind."""
        info = _lookup(api_version, kind)
        path = _collection_path(info, namespace)
        items: builtins.list[dict] = []
        token = None
        while True:
            page = self._request(
                "GET",
                path,
                query=[
                    ("labelSelector", label_selector or None),
                    ("fieldSelector", field_selector or None),
                    ("limit", limit),
                    ("continue", token),
                ],
            )
            for item in page.get("items") or []:
                item.setdefault("apiVersion", api_version)
                item.setdefault("kind", kind)
                items.append(item)
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return items, metadata.get("resourceVersion", "")

    def delete(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> None:
        """Delete the object; one that does not exist counts as deleted."""
        info = _lookup(api_version, kind)
        try:
            self._request(
                "DELETE",
                _object_path(info, name, namespace),
                body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
                content_type="application/json",
            )
        except ClusterError as exc:
            if exc.status != 404:
                raise

    def delete_namespace(self, name: str) -> None:
        """Start deleting a namespace and everything in it (it stays Terminating for a while)."""
        self.delete("v1", "Namespace", name)

    def scale(self, namespace: str, deployment: str, replicas: int) -> dict:
        """Set a Deployment's replicas through its scale subresource; returns the Scale.

        Not a server-side apply of `{spec: {replicas}}` under the `ale` manager: that would be
        ale's whole applied configuration for the Deployment and drop every other field it
        owns. A scale patch is an update that moves ownership of `spec.replicas` alone to
        `ale-scale`; the next full apply (force, manager `ale`) takes it back with whatever
        replicas the desired state says, so the rendered manifest stays the source of truth.
        """
        path = _object_path(_lookup("apps/v1", "Deployment"), deployment, namespace) + "/scale"
        return self._request(
            "PATCH",
            path,
            query=[("fieldManager", "ale-scale")],
            body={"spec": {"replicas": int(replicas)}},
            content_type="application/merge-patch+json",
            conflict_retryable=True,
        )

    def events(self, namespace: str, *, field_selector: str | None = None) -> builtins.list[dict]:
        """core/v1 Events of a namespace, oldest first."""
        items, _ = self.list("v1", "Event", namespace=namespace, field_selector=field_selector)
        return sorted(items, key=_event_time)

    def pod_metrics(self, *, label_selector: str) -> builtins.list[dict] | None:
        """PodMetrics (metrics.k8s.io/v1beta1) of the matching pods in every namespace, in one
        list call; None when the cluster does not serve the metrics API (no metrics-server).

        A 404 of the collection means the API group is not there: metrics-server answers an
        empty list, never a 404, for a selector that matches nothing.
        """
        try:
            page = self._request(
                "GET", "/apis/metrics.k8s.io/v1beta1/pods", query=[("labelSelector", label_selector or None)]
            )
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise
        return builtins.list(page.get("items") or [])

    def can_i(self, verb: str, group: str, resource: str, *, namespace: str = "") -> bool:
        """Whether this client's own identity may `verb` `resource` (`pods`, `pods/log`) of API
        `group`: in `namespace`, or in every namespace and at the cluster scope when it is empty.

        A SelfSubjectAccessReview: the cluster's authorizers answer as they would for the
        request itself, without making it.
        """
        plural, _, subresource = resource.partition("/")
        attributes = {"verb": verb, "group": group, "resource": plural}
        if subresource:
            attributes["subresource"] = subresource
        if namespace:
            attributes["namespace"] = namespace
        review = self._request(
            "POST",
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            },
            content_type="application/json",
        )
        return bool((review.get("status") or {}).get("allowed"))

    # -- streams

    def watch(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int = 300,
        allow_bookmarks: bool = True,
    ) -> WatchStream:
        """Watch changes after `resource_version`; iterate the result for `(type, object)`.

        The server ends the watch after `timeout_seconds`; `close()` ends it sooner from any
        thread. A resourceVersion the server no longer has raises `ClusterError` with status 410.
        """
        info = _lookup(api_version, kind)
        path = _collection_path(info, namespace)
        what = f"WATCH {path}"
        response = self._send(
            "GET",
            path,
            query=[
                ("watch", "true"),
                ("labelSelector", label_selector or None),
                ("fieldSelector", field_selector or None),
                ("resourceVersion", resource_version or None),
                ("allowWatchBookmarks", "true" if allow_bookmarks else None),
                ("timeoutSeconds", int(timeout_seconds)),
            ],
            timeout=(self.request_timeout[0], timeout_seconds + WATCH_READ_GRACE),
        )
        self._raise_for_stream_status(response, what)
        return WatchStream(response, self.name, what, api_version, kind)

    def open_log_stream(self, namespace: str, pod: str, **options: Any) -> LogStream:
        """Open a pod's log; read it with `iter_chunks()`, stop it with `close()`. `options` are
        those of `LogQuery`.

        The request is the one `CoreV1Api.read_namespaced_pod_log(..., _preload_content=False)`
        sends, made through the same ApiClient; that method cannot be used as is because it
        only accepts positive read timeouts, and a followed log may rightly stay silent for
        hours (only the connect timeout applies; `close()` ends the wait).
        """
        query = LogQuery(**options)
        path, what = _log_path(namespace, pod), f"LOG {namespace}/{pod}"
        response = self._send(
            "GET",
            path,
            query=query.params(),
            # (connect, None): the REST layer turns the pair into a urllib3 Timeout, None meaning no limit.
            timeout=(self.request_timeout[0], None if query.follow else self.request_timeout[1]),
        )
        self._raise_for_stream_status(response, what)
        return LogStream(response, self.name, what)

    async def open_log_stream_async(self, namespace: str, pod: str, **options: Any) -> AsyncLogStream:
        """`open_log_stream` on the running event loop: the same request, read with aiohttp.

        The URL and headers (credentials included) come from the official client's own request
        builder; TLS, the server name and the proxy from the same configuration. A followed log
        has only a connect timeout, like the threaded one; `close()` ends the wait.
        """
        query = LogQuery(**options)
        what = f"LOG {namespace}/{pod}"
        configuration = self.configuration
        proxy = None
        if configuration.proxy and not should_bypass_proxies(configuration.host, configuration.no_proxy or ""):
            if is_socks_proxy_url(configuration.proxy):
                raise ClusterError(
                    f"{what}: a SOCKS proxy cannot carry a followed log",
                    retryable=False,
                    reason="InvalidConfiguration",
                    user_message=f"The cluster '{self.name}' is reached through a SOCKS proxy, which live logs cannot use.",
                )
            proxy = configuration.proxy
        # Building the request can block: an expired token is renewed by the kubeconfig's
        # credential plugin (a program it runs) or OIDC refresh, and certificates are read from
        # files. Off the loop, which every other socket of the process shares.
        try:
            url, headers, tls = await in_thread(self._async_log_request, _log_path(namespace, pod), query)
        except (ssl.SSLError, OSError) as exc:
            raise _transport_error(self.name, exc, what=what) from exc
        connect, read = self.request_timeout
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=None if query.follow else read)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=1), timeout=timeout, read_bufsize=_ASYNC_CHUNK
        )
        try:
            response = await session.get(
                url,
                headers=headers,
                proxy=proxy,
                proxy_headers=configuration.proxy_headers if proxy else None,
                server_hostname=configuration.tls_server_name or None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            await session.close()
            raise _transport_error(self.name, exc, what=what) from exc
        except BaseException:
            await session.close()
            raise
        stream = AsyncLogStream(session, response, self.name, what)
        if not 200 <= response.status < 300:
            try:
                body = await response.content.read(64 * 1024)
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                body = b""
            finally:
                await stream.close()
            raise _http_error(self.name, response.status, body, response.headers, what=what)
        return stream

    def _async_log_request(self, path: str, query: LogQuery) -> tuple[str, dict[str, str], ssl.SSLContext | bool]:
        """The URL and headers (credentials included) the official client would send for this
        log, and the TLS settings to send them with (False over plain HTTP)."""
        _, url, headers, _, _ = self.api_client.param_serialize(
            method="GET",
            resource_path=path,
            query_params=[(k, v) for k, v in query.params() if v is not None],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        return url, headers, self._ssl_context() if url.startswith("https:") else False

    def _ssl_context(self) -> ssl.SSLContext:
        """The TLS settings of the official client's connection pool, as an `ssl.SSLContext`."""
        context = getattr(self, "_async_ssl", None)
        if context is not None:
            return context
        configuration = self.configuration
        context = ssl.create_default_context(
            cafile=configuration.ssl_ca_cert or None, cadata=configuration.ca_cert_data or None
        )
        if configuration.cert_file:
            context.load_cert_chain(configuration.cert_file, configuration.key_file or None)
        if not configuration.verify_ssl:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        elif configuration.assert_hostname is False:
            context.check_hostname = False
        self._async_ssl = context
        return context

    def _raise_for_stream_status(self, response: urllib3.HTTPResponse, what: str) -> None:
        if 200 <= response.status < 300:
            return
        try:
            body = response.data
        except _TRANSPORT_ERRORS:
            body = b""
        finally:
            response.release_conn()
        raise _http_error(self.name, response.status, body, response.headers, what=what)

    def open_exec(
        self,
        namespace: str,
        pod: str,
        *,
        command: builtins.list[str],
        container: str | None = None,
        tty: bool = True,
        stdin: bool = True,
    ) -> ExecSession:
        """Start `command` in the pod's container and return the live session."""
        what = f"EXEC {namespace}/{pod}"
        # stream() swaps `call_api` on the ApiClient it is given while it connects: a private
        # ApiClient per session keeps that away from the REST calls and from other sessions.
        api = k8s.CoreV1Api(k8s.ApiClient(self.configuration))
        kwargs: dict[str, Any] = {
            "command": command,
            "stdin": stdin,
            "stdout": True,
            "stderr": not tty,  # a TTY merges stderr into stdout; asking for both is an error
            "tty": tty,
            "_preload_content": False,
            "binary": True,
        }
        if container:
            kwargs["container"] = container
        try:
            ws = k8s_stream(api.connect_get_namespaced_pod_exec, pod, namespace, **kwargs)
        except ApiException as exc:
            raise self._exec_error(exc, what) from exc
        except _TRANSPORT_ERRORS as exc:
            raise _transport_error(self.name, exc, what=what) from exc
        return ExecSession(ws, self.name, what)

    def _exec_error(self, exc: ApiException, what: str) -> ClusterError:
        """websocket_call folds every failure into ApiException(status=0, reason=str(error))."""
        cause = exc.__context__
        status = getattr(cause, "status_code", None)
        if status:
            body = getattr(cause, "resp_body", None)
            headers = getattr(cause, "resp_headers", None) or {}
            return _http_error(self.name, int(status), body, _Caseless(headers), what=what)
        if exc.status:
            return _http_error(self.name, exc.status, exc.body, exc.headers or {}, what=what)
        if isinstance(cause, BaseException):
            return _transport_error(self.name, cause, what=what)
        return ClusterError(
            f"{what}: {exc.reason}",
            retryable=True,
            reason="Unreachable",
            user_message=f"The cluster '{self.name}' cannot be reached.",
        )


class _Caseless(dict):
    def get(self, key: str, default: Any = None) -> Any:
        for name, value in self.items():
            if name.lower() == key.lower():
                return value
        return default


def _event_time(event: dict) -> str:
    return (
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )
