"""The controller manager: the work queues, the resync, and the store changes turned into keys for
one controller per kind (the modules beside this one)."""
from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque

from .. import kinds, volumes
from ..api import Api, ApiError
from ..store import Change
from ..eventttl import DEFAULT_EVENT_TTL
from ..quota import changes_pod_usage
from ..usage import LEAK_DEFAULT_MIB_PER_SECOND
from ..volumes import CLAIM, STORAGE_CLASS
from .claims import ClaimController
from .deployments import DeploymentController
from .events import Recorder
from .gc import GarbageCollector
from .ingresses import IngressController
from .jobs import JobController
from .kubelet import Kubelet
from .namespaces import NamespaceController
from .objects import job_finished
from .quotas import QuotaController
from .replicasets import ReplicaSetController
from .scheduler import SchedulerController
from .services import ServiceController
from .workqueue import Key, WorkQueue

log = logging.getLogger("devcluster.controllers")

# While changes wait, the periodic resync's keys take a turn after this many of theirs
# (`ControllerManager._next_key`).
RESYNC_SHARE = 4

# How often expired events are looked for: an event outlives its TTL by at most this much.
EVENT_EXPIRY_SECONDS = 5.0


def changes_spec(change: Change) -> bool:
    """Whether a change is to what an object asks for: created, deleted, being deleted, or given a
    new generation (its spec). What it reports (status, a pod bound or ready) is not: those are
    most of a storm's changes."""
    if change.type != "MODIFIED" or change.prev is None:
        return True
    meta, before = change.obj["metadata"], change.prev["metadata"]
    return meta.get("generation") != before.get("generation") or (
        bool(meta.get("deletionTimestamp")) != bool(before.get("deletionTimestamp"))
    )


def _last_written(event: dict) -> float:
    """When an event was last written: its own time fields, or when the server stored it if the
    writer's are missing or not times (the emulator stores what a client sends there)."""
    for stamp in (event.get("lastTimestamp"), event.get("eventTime"), event["metadata"].get("creationTimestamp")):
        if isinstance(stamp, str):
            try:
                return kinds.parse_iso(stamp)
            except ValueError:
                continue
    return time.time()


class ControllerManager(
    SchedulerController,
    ClaimController,
    GarbageCollector,
    NamespaceController,
    ServiceController,
    IngressController,
    QuotaController,
    ReplicaSetController,
    DeploymentController,
    JobController,
):
    """kube-controller-manager and kube-scheduler in one: a work queue per controller of
    (controller, namespace, name) keys that `observe` fills from store changes, one worker that
    takes them in turns (`_next_key`) and calls the controller's `sync_<controller>`, and a
    periodic resync. The controllers are one class per kind, mixed in."""

    def __init__(self, api: Api, *, pod_ready_seconds: float = 1.0, backoff_base: float | None = None,
                 resync_seconds: float = 1.0, leak_mib_per_second: float = LEAK_DEFAULT_MIB_PER_SECOND):
        self.api = api
        self.store = api.store
        self.recorder = Recorder(api)
        self.kubelet = Kubelet(api, self.recorder, ready_seconds=pod_ready_seconds,
                               backoff_base=backoff_base if backoff_base is not None else max(pod_ready_seconds, 0.2),
                               leak_mib_per_second=leak_mib_per_second)
        # A queue per controller, taking turns (`turns`: those with keys waiting, in the order
        # of their turn), and the keys only the periodic resync enqueued (see `_next_key`).
        self.queues: dict[str, WorkQueue] = {}
        self.turns: deque[str] = deque()
        self.resyncing: dict[Key, None] = {}
        self._since_resync_key = 0
        self.wake: asyncio.Event | None = None
        self.tasks: list[asyncio.Task] = []
        self.resync_seconds = resync_seconds
        self.job_retry_at: dict[str, float] = {}
        # Keys queued for later (`enqueue_after`), each with its one timer.
        self.later: dict[Key, asyncio.TimerHandle] = {}
        # Claims the persistentvolume controller could not provision; it retries on its resync period.
        self.claim_retry_at: dict[str, float] = {}
        self.claim_retry_seconds = 15.0
        self.event_ttl = DEFAULT_EVENT_TTL  # the server sets --event-ttl
        self._next_event_expiry = 0.0
        self.store.listeners.append(self.observe)

    # --- plumbing --------------------------------------------------------------------------------

    def start(self) -> None:
        self.wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self._worker()), loop.create_task(self._resync())]
        self._resync_all()

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.kubelet.stop()

    def enqueue(self, controller: str, namespace: str, name: str, *, spec: bool = False) -> None:
        """Queue a key once, in its controller's queue: `spec` when the change is to what the
        key's own object asks for (`changes_spec`), which goes ahead of reports."""
        key = (controller, namespace, name)
        self.resyncing.pop(key, None)
        queue = self.queues.get(controller)
        if queue is None:
            queue = self.queues[controller] = WorkQueue()
        if not queue:
            self.turns.append(controller)
        queue.put(key, spec)
        if self.wake is not None:
            self.wake.set()

    def enqueue_after(self, controller: str, namespace: str, name: str, delay: float) -> None:
        """Queue a key once `delay` seconds have passed (client-go's `AddAfter`): what is due at
        a time (a Job's deadline, its next retry) does not wait for the resync. A key has one
        timer, the earliest asked for; a key whose object went by then syncs to nothing."""
        key = (controller, namespace, name)
        loop = asyncio.get_running_loop()
        timer = self.later.get(key)
        if timer is not None:
            if timer.when() <= loop.time() + delay:
                return
            timer.cancel()

        def due() -> None:
            del self.later[key]
            self.enqueue(*key)

        self.later[key] = loop.call_later(max(delay, 0.0), due)

    def _enqueue_resync(self, controller: str, namespace: str, name: str) -> None:
        key = (controller, namespace, name)
        queue = self.queues.get(controller)
        if queue is None or key not in queue:
            self.resyncing[key] = None
            if self.wake is not None:
                self.wake.set()

    def _next_key(self) -> Key | None:
        """The next key to sync. kube-controller-manager's controllers and kube-scheduler each
        work a queue of their own with workers of their own, in milliseconds: a user's scale is
        acted on at once while the pods of a big rollout wait to be scheduled and ReplicaSets
        count pods reporting Ready. One worker here takes about a millisecond a key, and a
        300-service rollout queues a thousand keys; in one first-in-first-out queue a Stop would wait
        seconds behind them. So each controller has its queue (`WorkQueue`: spec changes ahead of
        reports) and the queues take turns, a key each.

        The resync's keys wait behind them and take a turn after every `RESYNC_SHARE` of theirs:
        a storm delays a resync, never stops it."""
        if self.resyncing and (self._since_resync_key >= RESYNC_SHARE or not self.turns):
            key = next(iter(self.resyncing))
            del self.resyncing[key]
            self._since_resync_key = 0
            return key
        if not self.turns:
            return None
        controller = self.turns.popleft()
        queue = self.queues[controller]
        key = queue.pop()
        if queue:
            self.turns.append(controller)
        self._since_resync_key += 1
        return key

    async def _worker(self) -> None:
        assert self.wake is not None
        while True:
            await self.wake.wait()
            self.wake.clear()
            while (key := self._next_key()) is not None:
                try:
                    getattr(self, f"sync_{key[0]}")(key[1], key[2])
                except ApiError as exc:
                    log.debug("%s %s/%s: %s", key[0], key[1], key[2], exc.message)
                except Exception:
                    log.exception("controller %s failed on %s/%s", *key)
                await asyncio.sleep(0)

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.resync_seconds)
            try:
                self._resync_all()
            except Exception:
                # One bad object must not end the resync for the life of the cluster: timed work
                # (a Job's deadline, a claim's retry, events' expiry) would never happen again.
                log.exception("the controllers' resync failed")

    def _resync_all(self) -> None:
        if time.monotonic() >= self._next_event_expiry:
            # Every few seconds, not every resync: it reads every event of the cluster.
            self._next_event_expiry = time.monotonic() + EVENT_EXPIRY_SECONDS
            self._expire_events()
        for d in self.store.list("deployments.apps"):
            self._enqueue_resync("deployment", d["metadata"]["namespace"], d["metadata"]["name"])
        for j in self.store.list("jobs.batch"):
            if not job_finished(j):
                self._enqueue_resync("job", j["metadata"]["namespace"], j["metadata"]["name"])
        for ns in self.store.list("namespaces"):
            self._enqueue_resync("namespace", "", ns["metadata"]["name"])
        for claim in self.store.list(CLAIM.bucket):
            if claim["metadata"].get("deletionTimestamp") or (claim.get("status") or {}).get("phase") != "Bound":
                self._enqueue_resync("claim", claim["metadata"]["namespace"], claim["metadata"]["name"])
        for pod in self.store.list("pods"):
            # Unschedulable pods wait in the scheduler's queue; retrying them is cheap and idempotent.
            if not (pod.get("spec") or {}).get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                self._enqueue_resync("schedule", pod["metadata"]["namespace"], pod["metadata"]["name"])
        for bucket, items in list(self.store.buckets.items()):
            for obj in list(items.values()):
                if "foregroundDeletion" in (obj["metadata"].get("finalizers") or []):
                    name = json.dumps([obj["metadata"].get("namespace", ""), obj["metadata"]["name"]])
                    self._enqueue_resync("foreground", bucket, name)

    def _expire_events(self) -> None:
        """Events live `event_ttl` seconds after their last write, as with kube-apiserver's --event-ttl."""
        cutoff = time.time() - self.event_ttl
        for ev in self.store.list("events"):
            if _last_written(ev) < cutoff:
                self.store.delete("events", ev["metadata"]["namespace"], ev["metadata"]["name"])

    def observe(self, change: Change) -> None:
        obj, bucket = change.obj, change.bucket
        # Its own keys go first when it asks for something new; what it tells others is a report.
        spec = changes_spec(change)
        enqueue = self.enqueue
        meta = obj["metadata"]
        ns, name = meta.get("namespace", ""), meta["name"]
        if bucket == "pods":
            self.kubelet.observe(change)
            if change.type == "ADDED" and not (obj.get("spec") or {}).get("nodeName"):
                enqueue("schedule", ns, name, spec=spec)
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "ReplicaSet":
                    enqueue("replicaset", ns, ref["name"])
                elif ref.get("kind") == "Job":
                    enqueue("job", ns, ref["name"])
            if changes_pod_usage(change):
                enqueue("quota", ns, "")
            # A pod that stops or goes may release a claim held by its protection finalizer.
            for claim_name in volumes.claim_names(obj):
                claim = self.store.get(CLAIM.bucket, ns, claim_name)
                if claim is not None and claim["metadata"].get("deletionTimestamp"):
                    enqueue("claim", ns, claim_name)
        elif bucket == CLAIM.bucket:
            enqueue("claim", ns, name, spec=spec)
            enqueue("quota", ns, "")
            # The scheduler requeues the pods that wait for this claim (a cluster event they care about).
            for pod in self.store.list("pods", ns):
                if not (pod.get("spec") or {}).get("nodeName") and name in volumes.claim_names(pod):
                    enqueue("schedule", ns, pod["metadata"]["name"])
        elif bucket == STORAGE_CLASS.bucket:
            for claim in self.store.list(CLAIM.bucket):
                if (claim.get("spec") or {}).get("storageClassName") == name:
                    self.claim_retry_at.pop(claim["metadata"]["uid"], None)
                    enqueue("claim", claim["metadata"]["namespace"], claim["metadata"]["name"])
        elif bucket == "replicasets.apps":
            enqueue("replicaset", ns, name, spec=spec)
            for ref in meta.get("ownerReferences") or []:
                if ref.get("kind") == "Deployment":
                    enqueue("deployment", ns, ref["name"])
        elif bucket == "deployments.apps":
            enqueue("deployment", ns, name, spec=spec)
        elif bucket == "jobs.batch":
            enqueue("job", ns, name, spec=spec)
            if change.type == "DELETED":
                self.job_retry_at.pop(meta["uid"], None)
        elif bucket == "namespaces":
            enqueue("namespace", "", name, spec=spec)
        elif bucket == "services":
            enqueue("service", ns, name, spec=spec)
        elif bucket == "ingresses.networking.k8s.io":
            enqueue("ingress", ns, name, spec=spec)
        elif bucket == "resourcequotas":
            enqueue("quota", ns, "", spec=spec)
        if change.type == "DELETED":
            enqueue("gc", bucket, meta["uid"], spec=True)
            owner_ns = self.store.get("namespaces", "", ns) if ns else None
            if owner_ns is not None and owner_ns["metadata"].get("deletionTimestamp"):
                enqueue("namespace", "", ns)
        elif "foregroundDeletion" in (meta.get("finalizers") or []):
            enqueue("foreground", bucket, json.dumps([ns, name]), spec=spec)
