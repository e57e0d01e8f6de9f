"""What ale knows of one cluster's state, indexed by service: no Django, no I/O.

The watcher's threads feed it (`replace` after each list, `apply` for each watch event) and
the writer drains what changed (`take_changes`), woken by `changed`. The periodic resync fills
one from plain lists. Every method holds the lock, so the watch threads and the writer can share
one instance.

Memory is bounded by what ale reads, not by what the cluster sends: each object is cut down to
the fields `services.status.derive_status`, the event matching and the build hand-over read
(`slim`; a pod of 6 KB on the wire keeps a few hundred bytes), and Events are not kept at all,
only the resourceVersion each one was last handed over at, while it exists in the cluster; a
list of Events is read as it is fetched, each event handed over as it comes (the writer stores
them a page at a time while the list goes on), so a first list of tens of thousands is never
held whole. A
service is marked changed only when its cut-down objects differ, so a pod's status heartbeat or
a relist that finds the cluster as it was costs the database nothing.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Protocol

from clusters.labels import BUILD_LABEL, GENERATION_ANNOTATION, SERVICE_LABEL

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
# Events whose last handed-over version is remembered. The cluster's own event TTL bounds how
# many exist (a relist forgets those gone); this only caps a cluster that never expires them.
MAX_REMEMBERED_EVENTS = 50_000

Obj = dict[str, Any]


def _meta(obj: Obj) -> dict:
    return obj.get("metadata") or {}


# --- what ale keeps of each object ---------------------------------------------------------------

_CONDITION_FIELDS = ("type", "status", "reason", "message")
_CONTAINER_STATUS_FIELDS = ("name", "image", "ready", "restartCount", "state", "lastState")
_DEPLOYMENT_STATUS_FIELDS = ("observedGeneration", "replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
_EVENT_FIELDS = (
    "involvedObject", "regarding", "reason", "message", "note", "type", "count", "series",
    "firstTimestamp", "lastTimestamp", "eventTime",
)  # fmt: skip


def _pick(source: Obj | None, names: Iterable[str]) -> Obj:
    source = source or {}
    return {name: source[name] for name in names if source.get(name) is not None}


def _slim_meta(obj: Obj, labels: Iterable[str], *, annotations: Iterable[str] = ()) -> Obj:
    meta = _meta(obj)
    slim = _pick(meta, ("name", "namespace", "uid", "generation", "deletionTimestamp", "creationTimestamp"))
    kept = _pick(meta.get("labels"), labels)
    if kept:
        slim["labels"] = kept
    kept = _pick(meta.get("annotations"), annotations)
    if kept:
        slim["annotations"] = kept
    return slim


def _conditions(status: Obj) -> list[Obj]:
    return [_pick(condition, _CONDITION_FIELDS) for condition in status.get("conditions") or []]


def slim_pod(obj: Obj) -> Obj:
    """What the card's status reads of a Pod: its identity, deletion, containers' images and
    states, conditions. No managedFields, volumes, env, probes or resources."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    slim_spec = {
        key: [_pick(container, ("name", "image")) for container in spec[key]]
        for key in ("initContainers", "containers")
        if spec.get(key)
    }
    slim_status = _pick(status, ("phase",))
    slim_status["conditions"] = _conditions(status)
    for key in ("initContainerStatuses", "containerStatuses"):
        if status.get(key):
            slim_status[key] = [_pick(container, _CONTAINER_STATUS_FIELDS) for container in status[key]]
    return {"metadata": _slim_meta(obj, (SERVICE_LABEL,)), "spec": slim_spec, "status": slim_status}


def slim_deployment(obj: Obj) -> Obj:
    """What the card's status reads of a Deployment: generations, replica counts, conditions."""
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    slim_status = _pick(status, _DEPLOYMENT_STATUS_FIELDS)
    slim_status["conditions"] = _conditions(status)
    return {
        "metadata": _slim_meta(obj, (SERVICE_LABEL,), annotations=(GENERATION_ANNOTATION,)),
        "spec": _pick(spec, ("replicas",)),
        "status": slim_status,
    }


def slim_job(obj: Obj) -> Obj:
    """What the build hand-over reads of a Job: its build and its conditions."""
    return {"metadata": _slim_meta(obj, (BUILD_LABEL,)), "status": {"conditions": _conditions(obj.get("status") or {})}}


def slim_event(obj: Obj) -> Obj:
    """What the Events tab and the statuses read of an Event: of the object it is about, only the
    kind and the name (a first list holds tens of thousands of events until they are stored)."""
    slim = _pick(obj, _EVENT_FIELDS)
    for key in ("involvedObject", "regarding"):
        if key in slim:
            slim[key] = _pick(slim[key], ("kind", "name"))
    if "series" in slim:
        slim["series"] = _pick(slim["series"], ("count", "lastObservedTime"))
    slim["metadata"] = _pick(_meta(obj), ("name", "namespace", "uid", "resourceVersion", "creationTimestamp"))
    return slim


def slim_namespace(obj: Obj) -> Obj:
    return {"metadata": _pick(_meta(obj), ("name",))}


# Each watched kind's cut: the watcher applies it to every object as it arrives, before it is
# kept or handed over, so a list of 10,000 pods never holds 10,000 whole pods at once.
SLIM: dict[str, Callable[[Obj], Obj]] = {
    NAMESPACES: slim_namespace,
    DEPLOYMENTS: slim_deployment,
    PODS: slim_pod,
    EVENTS: slim_event,
    JOBS: slim_job,
}


def _event_version(obj: Obj) -> tuple:
    """What says an Event changed: its resourceVersion, or its count and times without one."""
    meta = _meta(obj)
    series = obj.get("series") or {}
    return (meta.get("resourceVersion"), obj.get("count"), obj.get("lastTimestamp"), series.get("count"))


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
        # event uid -> the version of it last handed to the writer, for the events that exist:
        # a relist hands over only what is new or changed, not the last hour of events again.
        self.event_versions: OrderedDict[str, tuple] = OrderedDict()
        self.synced: set[str] = set()
        self._changes = Changes()
        # Set while there are changes for the writer: it sleeps on this, not on a clock.
        self.changed = threading.Event()
        # When the oldest change still waiting for the writer arrived, and when the latest did
        # (time.monotonic()).
        self.changed_since: float | None = None
        self.changed_last: float | None = None

    # --- feeding -----------------------------------------------------------------------------

    def replace(self, kind: str, objects: Iterable[Obj]) -> None:
        """A full list of `kind`: the whole truth, anything missing from it is gone.

        The first list of a kind re-derives every service of the cluster (the database may be
        behind on anything); a later one (after 410 Gone, or a failed handler) marks only the
        services whose objects differ from what the state held. Events are handed over one by
        one as `objects` yields them (see `_replace_events`).
        """
        if kind == EVENTS:
            self._replace_events(objects)
            return
        slim = SLIM[kind]
        objects = [slim(obj) for obj in objects]
        with self._lock:
            first = kind not in self.synced
            if kind == NAMESPACES:
                names = {_meta(o).get("name", "") for o in objects}
                self._changes.namespaces_gone |= self.namespaces - names
                self.namespaces = names
            elif kind == DEPLOYMENTS:
                before, self.deployments = self.deployments, {}
                for obj in objects:
                    service = service_id_of(obj)
                    if service:
                        self.deployments[service] = obj
                self._changes.services |= _differing(before, self.deployments)
            elif kind == PODS:
                before, self.pods, self.pod_names = self.pods, {}, {}
                for obj in objects:
                    self._put_pod(obj, mark=False)
                self._changes.services |= _differing(before, self.pods)
            elif kind == JOBS:
                before, self.jobs = self.jobs, {}
                for obj in objects:
                    build = (_meta(obj).get("labels") or {}).get(BUILD_LABEL)
                    if build:
                        self.jobs[build] = obj
                self._changes.builds |= _differing(before, self.jobs)
            self._listed(kind, first)

    def _replace_events(self, objects: Iterable[Obj]) -> None:
        """A full list of Events, taken one at a time: each new or changed one is put with the
        changes as soon as it is read, the lock held only for it, so that the writer can store
        (and drop) the first pages while the later ones are still being fetched. The versions
        of the previous list are forgotten only once this one is complete; a list cut short (a
        page that could not be fetched) adds the versions it handed over, so the next list hands
        over only the rest.
        Unlike the other kinds, a first list of events does not re-derive every service: the
        statuses an event can change (its Warning) are derived when the writer stores it."""
        versions: OrderedDict[str, tuple] = OrderedDict()
        try:
            for obj in objects:
                obj = slim_event(obj)
                with self._lock:
                    self._put_event(obj, self.event_versions.get(_event_uid(obj)), versions)
        except BaseException:
            with self._lock:
                self.event_versions.update(versions)
            raise
        with self._lock:
            self.event_versions = versions
            self._listed(EVENTS, False)

    def _listed(self, kind: str, first: bool) -> None:
        self.synced.add(kind)
        if first:
            self._changes.all_services = True
        self._noted()

    def _noted(self) -> None:
        """Wake the writer if there is something for it (called with the lock held)."""
        if self._changes:
            self.changed_last = time.monotonic()
            if not self.changed.is_set():
                self.changed_since = self.changed_last
                self.changed.set()

    def apply(self, kind: str, event_type: str, obj: Obj) -> None:
        """One watch event (ADDED, MODIFIED or DELETED) of `kind`."""
        deleted = event_type == "DELETED"
        obj = SLIM[kind](obj)
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
                elif service and self.deployments.get(service) != obj:
                    self.deployments[service] = obj
                    self._changes.services.add(service)
            elif kind == PODS:
                if deleted:
                    self._drop_pod(obj)
                else:
                    self._put_pod(obj)
            elif kind == EVENTS:
                uid = _event_uid(obj)
                if deleted:
                    # Expired in the cluster (its event TTL): ale keeps its stored row.
                    self.event_versions.pop(uid, None)
                else:
                    self._put_event(obj, self.event_versions.get(uid), self.event_versions)
            elif kind == JOBS:
                build = (_meta(obj).get("labels") or {}).get(BUILD_LABEL)
                if build and deleted:
                    self.jobs.pop(build, None)
                    self._changes.builds.add(build)
                elif build and self.jobs.get(build) != obj:
                    self.jobs[build] = obj
                    self._changes.builds.add(build)
            self._noted()

    def build_jobs(self, builds: Iterable[str] | None = None) -> dict[str, Obj]:
        """The Jobs of the given builds (all of them when None) that the state holds."""
        with self._lock:
            if builds is None:
                return dict(self.jobs)
            return {build: self.jobs[build] for build in builds if build in self.jobs}

    def _put_pod(self, obj: Obj, *, mark: bool = True) -> None:
        service = service_id_of(obj)
        if not service:
            return
        meta = _meta(obj)
        pods = self.pods.setdefault(service, {})
        key = meta.get("uid") or meta.get("name", "")
        if pods.get(key) == obj:
            return
        pods[key] = obj
        self.pod_names[(meta.get("namespace", ""), meta.get("name", ""))] = service
        if mark:
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

    def _put_event(self, obj: Obj, handed_over: tuple | None, versions: OrderedDict[str, tuple]) -> None:
        """Remember `obj`'s version in `versions`; put it with the changes unless it was handed
        over as it is."""
        namespace = _meta(obj).get("namespace", "")
        # Events carry no labels: those outside ale's namespaces are dropped here, before they
        # cost a database query.
        if not namespace.startswith(NAMESPACE_PREFIX):
            return
        uid = _event_uid(obj)
        version = _event_version(obj)
        versions[uid] = version
        versions.move_to_end(uid)
        while len(versions) > MAX_REMEMBERED_EVENTS:
            versions.popitem(last=False)
        if version != handed_over:
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
            warnings[uid] = (now, slim_event(event))
            if len(warnings) > MAX_WARNINGS_PER_SERVICE:
                oldest = sorted(warnings.items(), key=lambda item: item[1][0])
                for key, _ in oldest[: len(warnings) - MAX_WARNINGS_PER_SERVICE]:
                    del warnings[key]
            if mark:
                self._changes.services.add(service)
                self._noted()

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

    def sizes(self) -> dict[str, int]:
        """How many things the state holds, by what they are (for logs and tests)."""
        with self._lock:
            return {
                "deployments": len(self.deployments),
                "pods": sum(len(pods) for pods in self.pods.values()),
                "pod_names": len(self.pod_names),
                "warnings": sum(len(warnings) for warnings in self.warnings.values()),
                "events": len(self.event_versions),
                "pending_events": len(self._changes.events),
                "jobs": len(self.jobs),
            }

    def pending(self) -> tuple[int | None, int]:
        """What waits for the writer: (services to derive, None for all of them; events)."""
        with self._lock:
            changes = self._changes
            return None if changes.all_services else len(changes.services), len(changes.events)

    def take_changes(self, *, max_events: int | None = None) -> Changes:
        """What changed since the last call, for the writer; with `max_events`, the events
        after the first that many stay for the next call (older first)."""
        with self._lock:
            changes, self._changes = self._changes, Changes()
            if max_events is not None and len(changes.events) > max_events:
                items = iter(changes.events.items())
                changes.events = dict(islice(items, max_events))
                self._changes.events = {**dict(items), **self._changes.events}
            if not self._changes:
                self.changed_since = self.changed_last = None
                self.changed.clear()
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
            self._noted()


def _event_uid(obj: Obj) -> str:
    meta = _meta(obj)
    return meta.get("uid") or f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def _differing(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    """The keys whose value is not the same in both (added, removed or changed)."""
    return {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
