"""The client of the transport: `KubeClient`, dict in and dict out, and the cache of one client per
cluster.

Everything goes through the official `kubernetes` client (its `ApiClient` for REST calls, its
`stream()` for exec) and comes back as plain dicts. Every failure, whatever raised it, leaves
the transport as a `ClusterError` (`clusters/errors.py`) that says whether trying again can help
(`retryable`) and what a user should read (`user_message`); callers never see urllib3, websocket
or ApiException types.

`client_for(cluster)` hands out one `KubeClient` per cluster and configuration
(`clusters/kubeconfig.py`); a client is thread-safe and meant to be shared by Celery threads,
stream consumers and the watcher.

One request is also made on an event loop: a followed pod log for the websocket consumers
(`open_log_stream_async`), sent with aiohttp, from the same configuration and with the same
headers the official client would send, so that hundreds of followed logs cost the server no
thread each. The responses that stay open (logs, watches) are in `clusters/streams.py`, the exec
websocket in `clusters/exec_session.py`, the kinds and their paths in `clusters/kinds.py`.
Nothing here touches the database: a `Cluster` instance is only read for its fields.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
import urllib3
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import is_socks_proxy_url, should_bypass_proxies
from kubernetes.stream import stream as k8s_stream

from clusters.errors import TRANSPORT_ERRORS, ClusterError, http_error, transport_error
from clusters.exec_session import ExecSession
from clusters.kinds import collection_path, lookup, object_path
from clusters.kubeconfig import (
    DEFAULT_POOL_SIZE,
    DEFAULT_REQUEST_TIMEOUT,
    cluster_label,
    configuration_fingerprint,
    configuration_for,
    configuration_from_kubeconfig,
    settings_knobs,
    tune,
)
from clusters.streams import ASYNC_CHUNK, AsyncLogStream, LogQuery, LogStream, WatchStream, in_thread, log_path

if TYPE_CHECKING:
    from clusters.models import Cluster

logger = logging.getLogger(__name__)

# A watch that stays silent this long past its own server-side timeout is a dead connection.
WATCH_READ_GRACE = 15.0

# Told of every REST request a client sent: (method, path, query, response status). Empty but
# while a test records what ale's code asks of the API server (tests/deploy/test_rbac_requests.py).
RequestObserver = Callable[[str, str, list[tuple[str, Any]], int], None]
_request_observers: list[RequestObserver] = []


@contextmanager
def observing_requests(observer: RequestObserver) -> Iterator[None]:
    """Within the block, `observer(method, path, query, status)` after each REST request that
    any client sends and that gets an answer (whatever its status)."""
    _request_observers.append(observer)
    try:
        yield
    finally:
        _request_observers.remove(observer)


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
    fingerprint = configuration_fingerprint(cluster)
    with _clients_lock:
        cached = _clients.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
    # Built outside the lock: loading a kubeconfig may run an exec credential plugin.
    pool_size, timeout = settings_knobs()
    fresh = KubeClient(
        configuration_for(cluster), name=cluster_label(cluster), pool_size=pool_size, request_timeout=timeout
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
        self.configuration = tune(configuration, pool_size)
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
        except TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc, what=what) from exc
        except ApiException as exc:
            # The REST layer wraps TLS failures as status 0.
            raise ClusterError(
                f"{what}: {exc.reason}",
                retryable=True,
                reason="Unreachable",
                user_message=f"The cluster '{self.name}' cannot be reached.",
            ) from exc
        for observer in _request_observers:
            observer(method, path, query or [], response.response.status)
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
        except TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc, what=what) from exc
        finally:
            response.release_conn()
        if not 200 <= response.status < 300:
            raise http_error(
                self.name, response.status, data, response.headers, what=what, conflict_retryable=conflict_retryable
            )
        if not data:
            return {}
        try:
            return orjson.loads(data)
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
            info = lookup(api_version, kind)
            metadata = manifest.get("metadata") or {}
            path = object_path(info, metadata.get("name", ""), metadata.get("namespace"))
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
        info = lookup(api_version, kind)
        try:
            return self._request("GET", object_path(info, name, namespace))
        except ClusterError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, manifest: dict) -> dict:
        """Create the object; an existing one is a 409 `ClusterError` (AlreadyExists), which
        callers racing for the same name (the watcher's Lease) read as "someone was first"."""
        info = lookup(manifest.get("apiVersion", ""), manifest.get("kind", ""))
        metadata = manifest.get("metadata") or {}
        return self._request(
            "POST", collection_path(info, metadata.get("namespace")), body=manifest, content_type="application/json"
        )

    def replace(self, manifest: dict) -> dict:
        """Replace the object (PUT). With `metadata.resourceVersion` set, a write by anyone
        else since that version is a 409 `ClusterError`: a compare-and-swap."""
        info = lookup(manifest.get("apiVersion", ""), manifest.get("kind", ""))
        metadata = manifest.get("metadata") or {}
        return self._request(
            "PUT",
            object_path(info, metadata.get("name", ""), metadata.get("namespace")),
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
        transform: Callable[[dict], dict] | None = None,
    ) -> tuple[builtins.list[dict], str]:
        """All matching objects (following `continue` pages of `limit` each) and the list's
        resourceVersion, from which a watch can start. Items carry apiVersion and kind.

        `transform`, when given, is applied to each item as its page arrives (the watcher keeps
        a few fields of each): with `limit`, a list of thousands of objects never holds more
        than one page of whole objects and its JSON text at once."""
        items: builtins.list[dict] = []
        resource_version = ""
        for page, resource_version in list_pages(
            self,
            api_version,
            kind,
            namespace=namespace,
            label_selector=label_selector,
            field_selector=field_selector,
            limit=limit,
            transform=transform,
        ):
            items.extend(page)
        return items, resource_version

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
        info = lookup(api_version, kind)
        try:
            self._request(
                "DELETE",
                object_path(info, name, namespace),
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
        path = object_path(lookup("apps/v1", "Deployment"), deployment, namespace) + "/scale"
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
        info = lookup(api_version, kind)
        path = collection_path(info, namespace)
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
        path, what = log_path(namespace, pod), f"LOG {namespace}/{pod}"
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
            url, headers, tls = await in_thread(self._async_log_request, log_path(namespace, pod), query)
        except (ssl.SSLError, OSError) as exc:
            raise transport_error(self.name, exc, what=what) from exc
        connect, read = self.request_timeout
        timeout = aiohttp.ClientTimeout(total=None, connect=connect, sock_read=None if query.follow else read)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=tls, limit=1), timeout=timeout, read_bufsize=ASYNC_CHUNK
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
            raise transport_error(self.name, exc, what=what) from exc
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
            raise http_error(self.name, response.status, body, response.headers, what=what)
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
        except TRANSPORT_ERRORS:
            body = b""
        finally:
            response.release_conn()
        raise http_error(self.name, response.status, body, response.headers, what=what)

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
        except TRANSPORT_ERRORS as exc:
            raise transport_error(self.name, exc, what=what) from exc
        return ExecSession(ws, self.name, what)

    def _exec_error(self, exc: ApiException, what: str) -> ClusterError:
        """websocket_call folds every failure into ApiException(status=0, reason=str(error))."""
        cause = exc.__context__
        status = getattr(cause, "status_code", None)
        if status:
            body = getattr(cause, "resp_body", None)
            headers = getattr(cause, "resp_headers", None) or {}
            return http_error(self.name, int(status), body, _Caseless(headers), what=what)
        if exc.status:
            return http_error(self.name, exc.status, exc.body, exc.headers or {}, what=what)
        if isinstance(cause, BaseException):
            return transport_error(self.name, cause, what=what)
        return ClusterError(
            f"{what}: {exc.reason}",
            retryable=True,
            reason="Unreachable",
            user_message=f"The cluster '{self.name}' cannot be reached.",
        )


def list_pages(
    kube: KubeClient,
    api_version: str,
    kind: str,
    *,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    limit: int | None = None,
    transform: Callable[[dict], dict] | None = None,
) -> Iterator[tuple[list[dict], str]]:
    """`KubeClient.list` a page at a time: each page's items with the list's resourceVersion,
    the next page asked for only when this one has been taken, so that a caller storing each
    page as it comes never holds the whole list."""
    info = lookup(api_version, kind)
    path = collection_path(info, namespace)
    token = None
    while True:
        page = kube._request(
            "GET",
            path,
            query=[
                ("labelSelector", label_selector or None),
                ("fieldSelector", field_selector or None),
                ("limit", limit),
                ("continue", token),
            ],
        )
        items: list[dict] = []
        for item in page.get("items") or []:
            item.setdefault("apiVersion", api_version)
            item.setdefault("kind", kind)
            items.append(transform(item) if transform else item)
        metadata = page.get("metadata") or {}
        del page
        yield items, metadata.get("resourceVersion", "")
        del items
        token = metadata.get("continue")
        if not token:
            return


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
