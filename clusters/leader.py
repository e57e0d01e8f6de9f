"""Leader election through a coordination.k8s.io/v1 Lease, for the watcher.

Two watchers over the same clusters would write every status twice and publish every card
twice; a second replica is still worth running so that a node failure costs seconds, not the
time it takes to reschedule a pod. So replicas compete for one Lease and only its holder
watches. This is the algorithm of client-go's `leaderelection` package, over `clusters.client`:

* A candidate reads the Lease. Free (absent, no holder, or released) → it takes it. Held by
  another → it waits until it has seen the same record, unchanged, for `leaseDurationSeconds`
  of *its own* clock. Comparing `renewTime` with the local time instead would make the
  election depend on the clocks of two machines agreeing.
* Every write is a compare-and-swap on `resourceVersion` (create for a missing Lease), so two
  candidates that both saw it expire cannot both win: the second write is a 409.
* The holder renews every `retry_period`. When it cannot renew for `renew_deadline` (shorter
  than the lease), or sees someone else holding the Lease, it stops acting at once: it has
  then stopped before any other candidate may take over.
* On a clean stop the holder releases the Lease (no holder, duration 1 s), so the next one
  takes over within a retry period rather than a whole lease.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

from clusters.client import KubeClient
from clusters.errors import ClusterError

logger = logging.getLogger(__name__)

LEASE_API_VERSION = "coordination.k8s.io/v1"


def default_identity() -> str:
    """The pod name (HOSTNAME in a pod) and the pid: unique even for two processes in one pod."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}"


def _micro_time(moment: datetime) -> str:
    # MicroTime: RFC 3339 with exactly six fractional digits, in UTC.
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Competes for the Lease `namespace/name`; `run()` calls `work` while it holds it."""

    def __init__(
        self,
        client: KubeClient | Callable[[], KubeClient],
        *,
        name: str,
        namespace: str,
        identity: str | None = None,
        lease_seconds: int = 15,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
    ) -> None:
        self._client: Callable[[], KubeClient] = (lambda: client) if isinstance(client, KubeClient) else client
        self.name = name
        self.namespace = namespace
        self.identity = identity or default_identity()
        self.lease_seconds = max(1, int(lease_seconds))
        # client-go's defaults are 15 s / 10 s / 2 s; the same proportions for any lease.
        self.renew_deadline = renew_deadline if renew_deadline is not None else self.lease_seconds * 2 / 3
        self.retry_period = retry_period if retry_period is not None else self.lease_seconds / 7.5
        if not 0 < self.retry_period < self.renew_deadline < self.lease_seconds:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < lease_seconds")
        self.is_leader = False
        self.observed_holder = ""
        self._observed_record: tuple[object, ...] | None = None
        self._observed_at = 0.0

    def __repr__(self) -> str:
        return f"<LeaderElector {self.namespace}/{self.name} as {self.identity}>"

    # --- one attempt ---------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        """One read and at most one write: True when this candidate holds the Lease afterwards.

        Raises `ClusterError` when the cluster cannot be asked (the caller retries).
        """
        kube = self._client()
        now = datetime.now(timezone.utc)
        lease = kube.get(LEASE_API_VERSION, "Lease", self.name, self.namespace)
        if lease is None:
            try:
                created = kube.create(self._lease(None, now, transitions=0, acquired=now))
            except ClusterError as exc:
                if exc.status == 409:  # another candidate created it first
                    return self._set_leader(False)
                raise
            self._observe(created)
            return self._set_leader(True)

        spec = lease.get("spec") or {}
        self._observe(lease)
        holder = spec.get("holderIdentity") or ""
        duration = int(spec.get("leaseDurationSeconds") or self.lease_seconds)
        if holder and holder != self.identity and time.monotonic() < self._observed_at + duration:
            return self._set_leader(False)

        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.identity:
            acquired = spec.get("acquireTime") or _micro_time(now)
        else:
            transitions += 1
            acquired = _micro_time(now)
        try:
            written = kube.replace(self._lease(lease, now, transitions=transitions, acquired=acquired))
        except ClusterError as exc:
            if exc.status == 409:  # written by someone else since our read
                return self._set_leader(False)
            raise
        self._observe(written)
        return self._set_leader(True)

    def release(self) -> None:
        """Give the Lease up if this candidate holds it; errors are logged (it expires anyway)."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            kube = self._client()
            lease = kube.get(LEASE_API_VERSION, "Lease", self.name, self.namespace)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            released = self._lease(lease, datetime.now(timezone.utc), transitions=None, acquired=None)
            released["spec"]["holderIdentity"] = None
            released["spec"]["leaseDurationSeconds"] = 1
            kube.replace(released)
            logger.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
        except ClusterError as exc:
            logger.warning("lease %s/%s: could not release (it expires by itself): %s", self.namespace, self.name, exc)

    def _lease(self, current: dict | None, now: datetime, *, transitions: int | None, acquired: str | datetime | None) -> dict:
        metadata: dict = {"name": self.name, "namespace": self.namespace}
        spec: dict = dict((current or {}).get("spec") or {})
        if current is not None:
            current_meta = current.get("metadata") or {}
            metadata["resourceVersion"] = current_meta.get("resourceVersion")
            if current_meta.get("labels"):
                metadata["labels"] = current_meta["labels"]
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=self.lease_seconds,
            renewTime=_micro_time(now),
        )
        if acquired is not None:
            spec["acquireTime"] = _micro_time(acquired) if isinstance(acquired, datetime) else acquired
        if transitions is not None:
            spec["leaseTransitions"] = transitions
        return {"apiVersion": LEASE_API_VERSION, "kind": "Lease", "metadata": metadata, "spec": spec}

    def _observe(self, lease: dict) -> None:
        spec = lease.get("spec") or {}
        record = (spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseDurationSeconds"))
        if record != self._observed_record:
            # The expiry clock restarts whenever the record changes: the local time of the change.
            self._observed_record = record
            self._observed_at = time.monotonic()
        self.observed_holder = spec.get("holderIdentity") or ""

    def _set_leader(self, leader: bool) -> bool:
        if leader and not self.is_leader:
            logger.info("lease %s/%s: acquired by %s", self.namespace, self.name, self.identity)
        self.is_leader = leader
        return leader

    # --- the loop ------------------------------------------------------------------------------

    def _attempt(self) -> bool:
        try:
            return self.try_acquire_or_renew()
        except ClusterError as exc:
            logger.warning("lease %s/%s: %s", self.namespace, self.name, exc)
            return False

    def run(self, stop: threading.Event, work: Callable[[threading.Event], None]) -> None:
        """Until `stop` is set: wait for the Lease, then run `work(lost)` in a thread while
        renewing it. `lost` is set when leadership ends (renewal failed for `renew_deadline`,
        someone else holds the Lease, or `stop`); `work` must return soon after. The Lease is
        released when `stop` ends the run."""
        try:
            while not stop.is_set():
                if not self._attempt():
                    stop.wait(self.retry_period)
                    continue
                lost = threading.Event()
                thread = threading.Thread(target=self._work, args=(work, lost), name="leader-work", daemon=True)
                thread.start()
                self._renew(stop, lost, thread)
                lost.set()
                thread.join()
                if not stop.is_set():
                    # Leadership ended while running on: a fresh candidate (released or lost).
                    self.is_leader = False
                    stop.wait(self.retry_period)
        finally:
            self.release()

    def _work(self, work: Callable[[threading.Event], None], lost: threading.Event) -> None:
        try:
            work(lost)
        except Exception:
            logger.exception("lease %s/%s: the leader's work failed", self.namespace, self.name)

    def _renew(self, stop: threading.Event, lost: threading.Event, thread: threading.Thread) -> None:
        last_renewal = time.monotonic()
        while not stop.wait(self.retry_period):
            if not thread.is_alive():
                logger.warning("lease %s/%s: the leader's work ended; stepping down", self.namespace, self.name)
                self.release()
                return
            if self._attempt():
                last_renewal = time.monotonic()
                continue
            if self.observed_holder and self.observed_holder != self.identity:
                logger.warning("lease %s/%s: now held by %s; stopping", self.namespace, self.name, self.observed_holder)
                return
            if time.monotonic() - last_renewal > self.renew_deadline:
                # Stop before the lease can expire for the others: at most one acts at a time.
                logger.warning("lease %s/%s: not renewed for %.1fs; stopping", self.namespace, self.name, self.renew_deadline)
                self.is_leader = False
                return
