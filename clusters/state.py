"""What ale knows of one cluster's state, indexed by service: no Django, no I/O.

The watcher's threads feed it (`replace` after each list, `apply` for each watch event) and
the writer drains what changed (`take_changes`). The periodic resync fills one from plain lists.
Every method holds the lock, so the four watch threads and the writer can share one instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from clusters.labels import BUILD_LABEL, SERVICE_LABEL

NAMESPACE_PREFIX = "ale-"

# Kinds as the watcher names them.
NAMESPACES = "Namespace"
DEPLOYMENTS = "Deployment"
PODS = "Pod"
EVENTS = "Event"
JOBS = "Job"
KINDS = (NAMESPACES, DEPLOYMENTS, PODS, EVENTS, JOBS)

# Warning events older than this no longer explain the current state (a quota refusal from an
# hour ago says nothing about the pod created a minute ago); Kubernetes drops them at about 1 h.
WARNING_WINDOW_SECONDS = 15 * 60
MAX_WARNINGS_PER_SERVICE = 20

Obj = dict[str, Any]


def _meta(obj: Obj) -> dict:
    return obj.get("metadata") or {}


def service_id_of(obj: Obj) -> str | None:
    return (_meta(obj).get("labels") or {}).get(SERVICE_LABEL) or None


def environment_id_of_namespace(namespace: str) -> str | None:
    if namespace.startswith(NAMESPACE_PREFIX) and len(namespace) > len(NAMESPACE_PREFIX):
        return namespace[len(NAMESPACE_PREFIX) :]
    return None


@dataclass
class Changes:
    """What the writer must look at: services to re-derive, events to store, namespaces gone."""

    services: set[str] = field(default_factory=set)
    # All services of the cluster, not only those above: after a (re)list anything may have
    # changed while nobody watched, including services that have no object left at all.
    all_services: bool = False
    events: dict[str, Obj] = field(default_factory=dict)
    namespaces_gone: set[str] = field(default_factory=set)
    # Build ids whose Job changed; with `all_services`, every build Job is looked at.
    builds: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.services or self.all_services or self.events or self.namespaces_gone or self.builds)


@dataclass
class WriteResult:
    """What a writer of changes (`ChangesWriter`) did with them."""

    # The rows written (services whose card changed), for logs and tests.
    changed: list[Any] = field(default_factory=list)
    events_written: int = 0
    # Services whose row moved under us (a task or a user wrote it): to derive again.
    retry: set[str] = field(default_factory=set)


class ChangesWriter(Protocol):
    """Turns what changed in a cluster into rows: `services.observed.write_changes`, registered
    with `clusters.watcher.register_writer` when the apps are ready. The transport never
    imports what it writes."""

    def __call__(self, cluster_id: int, state: ClusterState, changes: Changes) -> WriteResult: ...


class ClusterState:
    """Deployments and Pods by service public id, recent Warnings, the ale namespaces."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.deployments: dict[str, Obj] = {}
        # service id -> pod uid -> pod
        self.pods: dict[str, dict[str, Obj]] = {}
        # (namespace, pod name) -> service id: events name pods, not services.
        self.pod_names: dict[tuple[str, str], str] = {}
        # service id -> event uid -> (seen at, event)
        self.warnings: dict[str, dict[str, tuple[float, Obj]]] = {}
        self.namespaces: set[str] = set()
        # build id -> its Job
        self.jobs: dict[str, Obj] = {}
        self.synced: set[str] = set()
        self._changes = Changes()

    # --- feeding -----------------------------------------------------------------------------

    def replace(self, kind: str, objects: Iterable[Obj]) -> None:
        """A full list of `kind`: the whole truth, anything missing from it is gone."""
        objects = list(objects)
        with self._lock:
            if kind == NAMESPACES:
                names = {_meta(o).get("name", "") for o in objects}
                self._changes.namespaces_gone |= self.namespaces - names
                self.namespaces = names
            elif kind == DEPLOYMENTS:
                self.deployments = {}
                for obj in objects:
                    self._put_deployment(obj)
            elif kind == PODS:
                self.pods, self.pod_names = {}, {}
                for obj in objects:
                    self._put_pod(obj)
            elif kind == EVENTS:
                for obj in objects:
                    self._put_event(obj)
            elif kind == JOBS:
                self.jobs = {}
                for obj in objects:
                    self._put_job(obj)
            self.synced.add(kind)
            self._changes.all_services = True

    def apply(self, kind: str, event_type: str, obj: Obj) -> None:
        """One watch event (ADDED, MODIFIED or DELETED) of `kind`."""
        deleted = event_type == "DELETED"
        with self._lock:
            if kind == NAMESPACES:
                name = _meta(obj).get("name", "")
                if deleted:
                    self.namespaces.discard(name)
                    self._changes.namespaces_gone.add(name)
                else:
                    self.namespaces.add(name)
            elif kind == DEPLOYMENTS:
                service = service_id_of(obj)
                if service and deleted:
                    self.deployments.pop(service, None)
                    self._changes.services.add(service)
                elif service:
                    self._put_deployment(obj)
            elif kind == PODS:
                if deleted:
                    self._drop_pod(obj)
                else:
                    self._put_pod(obj)
            elif kind == EVENTS and not deleted:
                # Kubernetes deletes events after about an hour; ale keeps its copy.
                self._put_event(obj)
            elif kind == JOBS:
                build = (_meta(obj).get("labels") or {}).get(BUILD_LABEL)
                if build and deleted:
                    self.jobs.pop(build, None)
                    self._changes.builds.add(build)
                elif build:
                    self._put_job(obj)

    def _put_job(self, obj: Obj) -> None:
        build = (_meta(obj).get("labels") or {}).get(BUILD_LABEL)
        if build:
            self.jobs[build] = obj
            self._changes.builds.add(build)

    def build_jobs(self, builds: Iterable[str] | None = None) -> dict[str, Obj]:
        """The Jobs of the given builds (all of them when None) that the state holds."""
        with self._lock:
            if builds is None:
                return dict(self.jobs)
            return {build: self.jobs[build] for build in builds if build in self.jobs}

    def _put_deployment(self, obj: Obj) -> None:
        service = service_id_of(obj)
        if service:
            self.deployments[service] = obj
            self._changes.services.add(service)

    def _put_pod(self, obj: Obj) -> None:
        service = service_id_of(obj)
        if not service:
            return
        meta = _meta(obj)
        self.pods.setdefault(service, {})[meta.get("uid") or meta.get("name", "")] = obj
        self.pod_names[(meta.get("namespace", ""), meta.get("name", ""))] = service
        self._changes.services.add(service)

    def _drop_pod(self, obj: Obj) -> None:
        meta = _meta(obj)
        service = service_id_of(obj) or self.pod_names.get((meta.get("namespace", ""), meta.get("name", "")))
        self.pod_names.pop((meta.get("namespace", ""), meta.get("name", "")), None)
        if not service:
            return
        pods = self.pods.get(service, {})
        pods.pop(meta.get("uid") or meta.get("name", ""), None)
        if not pods:
            self.pods.pop(service, None)
        self._changes.services.add(service)

    def _put_event(self, obj: Obj) -> None:
        namespace = _meta(obj).get("namespace", "")
        # Events carry no labels: those outside ale's namespaces are dropped here, before they
        # cost a database query.
        if not namespace.startswith(NAMESPACE_PREFIX):
            return
        uid = _meta(obj).get("uid") or f"{namespace}/{_meta(obj).get('name', '')}"
        self._changes.events[uid] = obj

    # --- matching and reading ----------------------------------------------------------------

    def pod_service(self, namespace: str, pod_name: str) -> str | None:
        with self._lock:
            return self.pod_names.get((namespace, pod_name))

    def note_warning(self, service: str, uid: str, event: Obj, *, now: float | None = None, mark: bool = True) -> None:
        """Remember a Warning about `service` for its status (the quota refusal lives only there).

        `mark=False` when the caller derives the service's status right away itself."""
        now = time.time() if now is None else now
        with self._lock:
            warnings = self.warnings.setdefault(service, {})
            warnings[uid] = (now, event)
            if len(warnings) > MAX_WARNINGS_PER_SERVICE:
                oldest = sorted(warnings.items(), key=lambda item: item[1][0])
                for key, _ in oldest[: len(warnings) - MAX_WARNINGS_PER_SERVICE]:
                    del warnings[key]
            if mark:
                self._changes.services.add(service)

    def observed(self, service: str, now: float | None = None) -> tuple[Obj | None, list[Obj], list[Obj]]:
        """The Deployment, Pods and recent Warning events of one service."""
        now = time.time() if now is None else now
        with self._lock:
            warnings = self.warnings.get(service, {})
            for uid in [uid for uid, (seen, _) in warnings.items() if now - seen > WARNING_WINDOW_SECONDS]:
                del warnings[uid]
            return (
                self.deployments.get(service),
                list(self.pods.get(service, {}).values()),
                [event for _, event in warnings.values()],
            )

    def is_synced(self, kinds: Iterable[str] = KINDS) -> bool:
        with self._lock:
            return all(kind in self.synced for kind in kinds)

    def take_changes(self) -> Changes:
        with self._lock:
            changes, self._changes = self._changes, Changes()
            return changes

    def give_back(self, changes: Changes) -> None:
        """Return changes the writer could not store, to be tried again with the next ones."""
        with self._lock:
            current = self._changes
            current.services |= changes.services
            current.all_services = current.all_services or changes.all_services
            current.events = {**changes.events, **current.events}
            current.namespaces_gone |= changes.namespaces_gone
            current.builds |= changes.builds
