"""Keep a local view of one kind of object on one cluster up to date.

`ResourceWatcher` is the list-then-watch loop (what client-go calls a reflector): it lists,
hands the full list to `on_sync`, then watches from the list's resourceVersion and hands every
change to `on_event`. It relists when the server says the resourceVersion expired (410),
reconnects with capped, jittered exponential backoff when the cluster is unreachable or cuts
the watch, and returns within about a second of its stop event being set.

It knows nothing about Django: `manage.py watch_clusters` builds one per (cluster, kind) and
runs them with `start_watchers`.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from clusters.client import KubeClient, list_pages
from clusters.errors import ClusterError
from clusters.streams import WatchStream

logger = logging.getLogger(__name__)

__all__ = ["ListStopped", "ResourceWatcher", "backoff_delay", "start_watchers"]

SyncCallback = Callable[[Iterable[dict]], Any]
EventCallback = Callable[[str, dict], Any]

# How often the stop event is checked while a watch blocks in a read.
_STOP_POLL = 0.2

# Objects per page of a list: kube-apiserver serves big lists in pages (client-go's reflector
# asks for 500), and a page at a time is all the JSON text a list holds.
LIST_PAGE_SIZE = 500


class ListStopped(Exception):
    """The watcher was asked to stop while it was reading a list."""


def backoff_delay(attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Seconds to wait before attempt `attempt` (1-based): exponential, capped, with jitter.

    The jitter keeps many watchers that lost the same cluster from reconnecting in step.
    """
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class ResourceWatcher:
    """List and watch one (api_version, kind, selector) on one cluster.

    `client` is a `KubeClient` or a callable returning one; a callable is asked again before
    every list and watch, so a client rebuilt for a changed kubeconfig is picked up.

    Callbacks run in the watcher's thread: `on_sync(objects)` after every (re)list with all
    current objects (treat it as the whole truth: anything not in it is gone), and
    `on_event(type, obj)` for ADDED / MODIFIED / DELETED. Bookmarks only move
    `resource_version`. `transform`, when given, cuts each listed object down as its page
    arrives (what the callbacks keep anyway), so a big list never lives whole in memory. With
    `stream_lists`, `on_sync` gets an iterator instead of a list, which fetches the next page
    only once it has yielded the objects of this one: a callback that stores what it reads as
    it goes holds a page, not the list (an error fetching a page is raised from the iterator).
    An exception from a callback is logged and followed by a relist, so a failed write is
    repaired from the cluster's state rather than lost.
    """

    def __init__(
        self,
        client: KubeClient | Callable[[], KubeClient],
        api_version: str,
        kind: str,
        *,
        on_sync: SyncCallback,
        on_event: EventCallback,
        namespace: str | None = None,
        label_selector: str | None = None,
        timeout_seconds: int = 60,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        name: str | None = None,
        transform: Callable[[dict], dict] | None = None,
        page_size: int = LIST_PAGE_SIZE,
        stream_lists: bool = False,
    ) -> None:
        self._client: Callable[[], KubeClient] = (lambda: client) if isinstance(client, KubeClient) else client
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.on_sync = on_sync
        self.on_event = on_event
        self.transform = transform
        self.page_size = page_size
        self.stream_lists = stream_lists
        self.timeout_seconds = timeout_seconds
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.name = name or f"{kind}{'/' + namespace if namespace else ''}{'?' + label_selector if label_selector else ''}"
        self.resource_version: str | None = None
        # Counters for logs, tests and a health page.
        self.syncs = 0
        self.watches = 0
        self.failures = 0
        self.last_error: ClusterError | None = None
        self._attempt = 0
        self._stream: WatchStream | None = None
        self._stream_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ResourceWatcher {self.name} rv={self.resource_version}>"

    def run(self, stop: threading.Event) -> None:
        """Loop until `stop` is set. Never raises for cluster failures."""
        done = threading.Event()
        guard = threading.Thread(target=self._close_on_stop, args=(stop, done), name=f"{self.name}-stop", daemon=True)
        guard.start()
        try:
            self._loop(stop)
        finally:
            done.set()
            self._close_stream()
            guard.join()

    def _loop(self, stop: threading.Event) -> None:
        need_list = True
        self._attempt = 0
        while not stop.is_set():
            try:
                client = self._client()
                if need_list:
                    listed: list[str] = []
                    objects = self._listed(client, listed, stop)
                    self.on_sync(objects if self.stream_lists else list(objects))
                    # A callback that stopped reading early still watches from the list's end.
                    for _ in objects:
                        pass
                    del objects
                    self.resource_version = listed[-1]
                    self.syncs += 1
                    self._attempt = 0
                    need_list = False
                started = time.monotonic()
                received = self._watch_once(client, stop)
                if not received and time.monotonic() - started < 1:
                    # The server keeps ending the watch at once: do not spin.
                    stop.wait(self._next_delay())
            except ClusterError as exc:
                if stop.is_set():
                    return
                self.last_error = exc
                if exc.expired:
                    logger.info("watch %s: resourceVersion %s expired, relisting", self.name, self.resource_version)
                    need_list = True
                    self.resource_version = None
                    continue
                self.failures += 1
                delay = self._next_delay(exc.retry_after)
                log = logger.warning if exc.retryable else logger.error
                log("watch %s: %s; retrying in %.1fs", self.name, exc, delay)
                stop.wait(delay)
            except Exception:
                if stop.is_set():
                    return
                self.failures += 1
                delay = self._next_delay()
                logger.exception("watch %s: handler failed; relisting in %.1fs", self.name, delay)
                need_list = True
                stop.wait(delay)

    def _listed(self, client: KubeClient, version: list[str], stop: threading.Event) -> Iterator[dict]:
        """The objects of one list, a page fetched at a time; appends the list's
        resourceVersion to `version` once the last page is in. A list read slowly (its callback
        stores each page first) ends at the next page once `stop` is set, as an error: what was
        read is not the whole truth."""
        pages = list_pages(
            client,
            self.api_version,
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            limit=self.page_size,
            transform=self.transform,
        )
        for page, resource_version in pages:
            yield from page
            del page
            if stop.is_set():
                raise ListStopped(self.name)
            version.append(resource_version)

    def _next_delay(self, retry_after: float | None = None) -> float:
        """Count a failed attempt; the backoff before the next one (at least Retry-After)."""
        self._attempt += 1
        delay = backoff_delay(self._attempt, base=self.backoff_base, cap=self.backoff_cap)
        if retry_after:
            delay = max(delay, min(retry_after, self.backoff_cap))
        return delay

    def _watch_once(self, client: KubeClient, stop: threading.Event) -> bool:
        """One watch request, until the server ends it; True if any event arrived."""
        stream = client.watch(
            self.api_version,
            self.kind,
            namespace=self.namespace,
            label_selector=self.label_selector,
            resource_version=self.resource_version,
            timeout_seconds=self.timeout_seconds,
            allow_bookmarks=True,
        )
        with self._stream_lock:
            self._stream = stream
        if stop.is_set():
            stream.close()
        self.watches += 1
        received = False
        try:
            for event_type, obj in stream:
                if stop.is_set():
                    break
                received = True
                self._attempt = 0
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if event_type != "BOOKMARK":
                    self.on_event(event_type, obj)
                # Moved only after the handler ran: a failing handler relists instead of
                # skipping past the event.
                if version:
                    self.resource_version = version
        finally:
            self._close_stream()
        return received

    def _close_stream(self) -> None:
        with self._stream_lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.close()

    def _close_on_stop(self, stop: threading.Event, done: threading.Event) -> None:
        # A watch blocks in a socket read for up to `timeout_seconds`; closing its response
        # wakes the read, which is what makes stopping prompt.
        while not stop.wait(_STOP_POLL):
            if done.is_set():
                return
        self._close_stream()

    def start(self, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread; join it after setting `stop`."""
        thread = threading.Thread(target=self.run, args=(stop,), name=f"watch-{self.name}", daemon=True)
        thread.start()
        return thread


def start_watchers(watchers: Iterable[ResourceWatcher], stop: threading.Event) -> list[threading.Thread]:
    """Start each watcher in its own thread; set `stop` and join the threads to end them."""
    return [watcher.start(stop) for watcher in watchers]
