"""Cluster → database → browser: the long-running side of `manage.py watch_clusters`.

Per cluster, five `ResourceWatcher` threads keep a `ClusterState` current:

* Namespaces and Deployments and Pods labelled `app.kubernetes.io/managed-by=ale`, across all
  namespaces: one watch each per cluster, however many environments it holds.
* core/v1 Events of all namespaces, filtered in memory to `ale-*`. Events carry no labels, so
  no selector narrows them on the server; the alternative, one watch per namespace, costs a
  thread and an open connection per environment and a watch restart whenever an environment
  appears. One cluster-wide watch stays at one connection; the events of other namespaces it
  also receives are a few per second even on a busy cluster, and are dropped before any
  database work.
* Build Jobs (labelled `ale.dev/build`): the writer hands a finished one to
  `services.tasks.finish_build`, which reads its log in a worker.

A sixth thread, the writer, takes what changed and hands it to the registered `ChangesWriter`
(`services.observed.write_changes`, which `services.apps` registers at startup: this package
imports no app), in one transaction: a burst of a hundred pod updates becomes one read of the
affected services and one bulk write of those whose card changed. It sleeps until something
changes, then waits `SETTLE_SECONDS` for what comes with it (a pod's update brings its
Deployment's and its events): a few status changes after a quiet spell, or a full slice of
events, are stored at once, while a storm (more than `PROMPT_SERVICES` services, changes that
keep coming, a list) or a trickle of events is stored at most every `flush_interval`, in
batches; statuses go ahead of a backlog of events, every other flush at most, so that the
backlog drains while statuses keep changing. No status is written until every kind but
the events has been listed once, so a half-known cluster never produces a wrong status; the
first list then re-derives every service of the cluster, which is what repairs the database
after a restart, and a relist (after 410 Gone) marks the services whose objects differ from
what the state held, so one that finds the cluster as it was writes nothing.

Lists come in pages, and every object is cut down to what ale reads as its page arrives
(`clusters.state.SLIM`): the state of 10,000 pods is a few MB, not the cluster's whole JSON.
Events, of which a first list holds tens of thousands, are stored while their list goes on:
each page joins the changes as it arrives, the writer stores them in slices of
`MAX_EVENTS_PER_FLUSH` (a Warning among them has its service derived again), and the list
fetches no further page while `MAX_PENDING_EVENTS` wait for the writer, so the watcher never
holds the whole list.

`WatchManager` re-reads the clusters every `refresh_interval` and starts or stops their
watchers; a cluster that cannot be reached only delays its own watchers (they back off).
"""

from __future__ import annotations

import ctypes
import gc
import logging
import math
import threading
import time
from collections.abc import Iterable, Iterator
from functools import partial

from django.db import close_old_connections, connection

from clusters.client import KubeClient, client_for
from clusters.labels import BUILD_SELECTOR, MANAGED_BY_SELECTOR
from clusters.models import Cluster
from clusters.state import (
    DEPLOYMENTS,
    EVENTS,
    JOBS,
    NAMESPACES,
    PODS,
    SLIM,
    Changes,
    ChangesWriter,
    ClusterState,
)
from clusters.watch import LIST_PAGE_SIZE, ResourceWatcher, backoff_delay

logger = logging.getLogger(__name__)

_writer: ChangesWriter | None = None


def register_writer(writer: ChangesWriter) -> None:
    """Name the function that stores what the watchers see (once, at startup)."""
    global _writer
    _writer = writer


def registered_writer() -> ChangesWriter:
    if _writer is None:
        raise RuntimeError("No writer of cluster changes is registered: is the services app installed?")
    return _writer

# Events handed to the writer per flush. The first list of a big cluster holds tens of
# thousands: they are stored in slices, and statuses go out between two slices, so a status
# change waits for one slice at most (each costs about half a millisecond an event, mostly
# rendering its row for the Events tabs), and the writer holds one slice of rows at a time.
MAX_EVENTS_PER_FLUSH = LIST_PAGE_SIZE // 2
# The list of events fetches no further page while this many wait for the writer.
MAX_PENDING_EVENTS = 2 * LIST_PAGE_SIZE
# ... unless the writer cannot store them (the database is down): the list then goes on.
PENDING_WAIT_SECONDS = 10.0

# What the writer waits, once woken by a change, for the changes that come with it.
SETTLE_SECONDS = 0.02
# Up to this many services to derive are stored at once; more (a storm) wait out the rest of
# `flush_interval` after the previous flush, to be stored together.
PROMPT_SERVICES = 20
# ... when the writer stored nothing for this long: during a storm, changes arrive all the time
# and each few would cost a transaction and their cards a render, so they join the next batch.
QUIET_SECONDS = 0.25
# ... or when nothing new has come for this long: the storm is over (its last pods are ready),
# and waiting out the interval would gather nothing more.
LULL_SECONDS = 0.06
# The writer looks at the state at least this often, changes or not; and this often while
# the first lists are still coming in.
IDLE_SECONDS = 1.0
UNSYNCED_POLL_SECONDS = 0.1

# (kind name in ClusterState, api version, kind, label selector)
WATCHED = (
    (NAMESPACES, "v1", "Namespace", MANAGED_BY_SELECTOR),
    (DEPLOYMENTS, "apps/v1", "Deployment", MANAGED_BY_SELECTOR),
    (PODS, "v1", "Pod", MANAGED_BY_SELECTOR),
    (EVENTS, "v1", "Event", None),
    # Build Jobs: the writer hands a finished one's build to `services.tasks.finish_build`.
    (JOBS, "batch/v1", "Job", BUILD_SELECTOR),
)
# What must be listed before any status is written. Not the events: the first list of a big
# cluster's events is stored while it is fetched, and an event that changes a status (a Warning)
# has that status derived when it is stored.
STATUS_KINDS = tuple(name for name, *_ in WATCHED if name != EVENTS)


def release_memory() -> None:
    """Hand the memory a burst used back to the system: Python frees the objects, but glibc keeps
    the pages of its heap unless asked (a first list of tens of thousands of events would
    otherwise stay in the watcher's resident size for good)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to ask
        pass


class ClusterWatcher:
    """The watchers and the writer of one cluster."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        flush_interval: float = 0.25,
        watch_timeout: int = 60,
        backoff_cap: float = 30.0,
        writer: ChangesWriter | None = None,
    ) -> None:
        self.cluster = cluster
        self.write_changes = writer or registered_writer()
        self.state = ClusterState()
        self.flush_interval = flush_interval
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        # Counters for logs and tests.
        self.flushes = 0
        # A (re)list or a flood of events is being stored, in slices.
        self._in_burst = False
        # The last flush stored statuses alone, ahead of a backlog of events: the next one stores
        # a slice of the backlog.
        self._statuses_went_first = False
        self.write_failures = 0
        self.watchers = [
            ResourceWatcher(
                self._client,
                api_version,
                kind,
                label_selector=selector,
                on_sync=partial(self._on_sync, name),
                on_event=partial(self._on_event, name),
                timeout_seconds=watch_timeout,
                backoff_cap=backoff_cap,
                name=f"{cluster.name}/{kind}",
                transform=SLIM[name],
                stream_lists=True,
            )
            for name, api_version, kind, selector in WATCHED
        ]

    def __repr__(self) -> str:
        return f"<ClusterWatcher {self.cluster.name}>"

    def _client(self) -> KubeClient:
        # Asked before every list and watch: a kubeconfig edited in the admin is picked up at
        # the next reconnect (the manager swaps in the fresh Cluster row).
        return client_for(self.cluster)

    def _on_event(self, kind: str, event_type: str, obj: dict) -> None:
        self.state.apply(kind, event_type, obj)

    def _on_sync(self, kind: str, objects: Iterable[dict]) -> None:
        self.state.replace(kind, self._paced(objects) if kind == EVENTS else objects)

    def _paced(self, events: Iterable[dict]) -> Iterator[dict]:
        """The events of a list as they are fetched, held back at each page boundary while the
        writer has `MAX_PENDING_EVENTS` still to store."""
        for count, event in enumerate(events, 1):
            yield event
            if count % LIST_PAGE_SIZE == 0:
                self._wait_for_writer()

    def _wait_for_writer(self) -> None:
        deadline = time.monotonic() + PENDING_WAIT_SECONDS
        while self.state.pending()[1] >= MAX_PENDING_EVENTS and time.monotonic() < deadline:
            if self.stop_event.wait(0.02):
                return

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for watcher in self.watchers:
            self.threads.append(watcher.start(self.stop_event))
        writer = threading.Thread(target=self._write_loop, name=f"write-{self.cluster.name}", daemon=True)
        writer.start()
        self.threads.append(writer)

    def stop(self) -> None:
        """Ask every thread to stop; `join` waits for them."""
        self.stop_event.set()
        self.state.changed.set()  # wakes the writer

    def join(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self.threads)

    @property
    def synced(self) -> bool:
        return self.state.is_synced()

    # --- the writer --------------------------------------------------------------------------

    def _write_loop(self) -> None:
        failures = 0
        last_flush = -math.inf
        try:
            while not self.stop_event.is_set():
                if failures:
                    if self.stop_event.wait(backoff_delay(failures)):
                        break
                else:
                    self.state.changed.wait(IDLE_SECONDS)
                    if not self._wait_until_due(last_flush):
                        break
                try:
                    if self.flush():
                        last_flush = time.monotonic()
                    failures = 0
                except Exception:
                    failures += 1
                    self.write_failures += 1
                    logger.exception("cluster %s: could not store changes (attempt %d)", self.cluster.name, failures)
            # What arrived before the stop is still worth storing.
            self.flush()
        except Exception:
            logger.exception("cluster %s: could not store the last changes", self.cluster.name)
        finally:
            connection.close()

    def _wait_until_due(self, last_flush: float) -> bool:
        """Wait until what is pending is due to be stored; False once asked to stop.

        Due after `SETTLE_SECONDS` when it is a few status changes after a quiet spell or a full
        slice of events, or status changes after which nothing new came for `LULL_SECONDS`
        (waiting would gather nothing more); `flush_interval` after the last flush when it is a
        storm of status changes, changes that keep coming, or a few events; looked at again
        every `SETTLE_SECONDS`, so a status change that joins a trickle of events does not wait
        longer than the interval."""
        woke = time.monotonic()
        while not self.stop_event.wait(SETTLE_SECONDS):
            now = time.monotonic()
            if not self.state.changed.is_set():
                return True  # nothing pending: the flush finds nothing to do
            if not self.state.is_synced(STATUS_KINDS):
                if now - woke >= UNSYNCED_POLL_SECONDS:
                    return True
                continue
            services, events = self.state.pending()
            # A few status changes go at once once the writer has been quiet for a moment; in a
            # storm (it stored something less than `QUIET_SECONDS` ago) they gather until then.
            quiet = now - last_flush >= QUIET_SECONDS
            if (quiet and services is not None and 0 < services <= PROMPT_SERVICES) or events >= MAX_EVENTS_PER_FLUSH:
                return True
            # The end of a storm: its last statuses go now, not at the end of the interval.
            latest = self.state.changed_last
            if services != 0 and latest is not None and now - latest >= LULL_SECONDS:
                return True
            if now - last_flush >= self.flush_interval:
                return True
        return False

    def flush(self) -> Changes | None:
        """Store what changed since the last flush; returns it (None when nothing could be)."""
        if not self.state.is_synced(STATUS_KINDS):
            return None
        since = self.state.changed_since
        services, events = self.state.pending()
        # Statuses behind a backlog of events (a first list being stored, a storm) go first,
        # alone: they wait for the slice being written, not for the rest of the backlog. Every
        # other flush at most: the backlog drains even while statuses keep changing.
        statuses_first = services != 0 and events > MAX_EVENTS_PER_FLUSH and not self._statuses_went_first
        changes = self.state.take_changes(max_events=0 if statuses_first else MAX_EVENTS_PER_FLUSH)
        if not changes:
            return changes
        # A (re)list: memory is handed back once its last slice is stored.
        self._in_burst |= changes.all_services
        # A long-lived thread must not hold on to a connection the database has dropped.
        close_old_connections()
        started = time.monotonic()
        try:
            result = self.write_changes(self.cluster.pk, self.state, changes)
        except Exception:
            self.state.give_back(changes)
            raise
        self.flushes += 1
        self._statuses_went_first = statuses_first
        if self._in_burst and not self.state.pending()[1]:
            # The last slice of a (re)list is stored: what held it is garbage now.
            self._in_burst = False
            release_memory()
        if result.retry:
            self.state.give_back(Changes(services=result.retry))
        if result.changed or result.events_written:
            done = time.monotonic()
            logger.info(
                "cluster %s: %d status change(s), %d event(s) stored in %d ms, %d ms after the oldest change waiting",
                self.cluster.name,
                len(result.changed),
                result.events_written,
                (done - started) * 1000,
                (done - (since or started)) * 1000,
            )
        return changes


class WatchManager:
    """Runs a `ClusterWatcher` for every cluster that has environments."""

    def __init__(self, *, refresh_interval: float = 30.0, **watcher_options: object) -> None:
        self.refresh_interval = refresh_interval
        self.watcher_options = watcher_options
        self.watchers: dict[int, ClusterWatcher] = {}

    def refresh(self) -> None:
        """Start watchers for new clusters, stop those of clusters gone or emptied."""
        close_old_connections()
        clusters = {cluster.pk: cluster for cluster in Cluster.objects.filter(environments__isnull=False).distinct()}
        for pk in list(self.watchers):
            if pk not in clusters:
                watcher = self.watchers.pop(pk)
                logger.info("cluster %s: no environments left, stopping its watchers", watcher.cluster.name)
                watcher.stop()
                watcher.join()
        for pk, cluster in clusters.items():
            watcher = self.watchers.get(pk)
            if watcher is None:
                try:
                    # Fails fast on a configuration that cannot work (a kubeconfig that does
                    # not parse); reachability is the watchers' business.
                    client_for(cluster)
                except Exception as exc:  # noqa: BLE001 - logged; retried at the next refresh
                    logger.error("cluster %s: cannot build a client: %s", cluster.name, exc)
                    continue
                logger.info("cluster %s: watching", cluster.name)
                watcher = ClusterWatcher(cluster, **self.watcher_options)  # type: ignore[arg-type]
                self.watchers[pk] = watcher
                watcher.start()
            else:
                watcher.cluster = cluster

    def run(self, stop: threading.Event) -> None:
        """Refresh until `stop` is set, then stop every watcher."""
        try:
            while not stop.is_set():
                try:
                    self.refresh()
                except Exception:
                    logger.exception("could not read the clusters; trying again in %.0fs", self.refresh_interval)
                stop.wait(self.refresh_interval)
        finally:
            self.stop_all()
            connection.close()

    def stop_all(self, timeout: float = 5.0) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        deadline = time.monotonic() + timeout
        for watcher in self.watchers.values():
            if not watcher.join(max(0.0, deadline - time.monotonic())):
                logger.warning("cluster %s: watchers did not stop in time", watcher.cluster.name)
        self.watchers.clear()
