"""The event recorder: core/v1 Events written the way client-go's legacy recorder does."""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..jsontree import clone
from .. import kinds
from ..api import Api, ApiError
from ..kinds import Kind, Obj
from .objects import EVENT, NODE, POD

log = logging.getLogger("devcluster.controllers")


class Recorder:
    """Writes core/v1 Events the way client-go's legacy recorder does, aggregating repeats into count."""

    def __init__(self, api: Api):
        self.api = api
        # What makes two events the same one (a repeat only bumps its count) -> its key in the
        # store: finding the event to aggregate into costs a lookup, not a scan of every event.
        self._similar: dict[tuple, tuple[str, str]] = {}
        api.store.listeners.append(self._index)

    @staticmethod
    def _aggregation_key(event: Obj) -> tuple:
        inv = event.get("involvedObject") or {}
        return (event["metadata"].get("namespace", ""), inv.get("uid"), event.get("reason"), event.get("message"),
                (event.get("source") or {}).get("component"), inv.get("fieldPath", ""), event.get("type"))

    def _index(self, change: Any) -> None:
        if change.bucket != "events":
            return
        key = self._aggregation_key(change.obj)
        where = (change.obj["metadata"].get("namespace", ""), change.obj["metadata"]["name"])
        if change.type == "DELETED":
            if self._similar.get(key) == where:
                del self._similar[key]
        else:
            self._similar[key] = where

    def _ref(self, kind: Kind, obj: Obj, field_path: str = "") -> Obj:
        meta = obj["metadata"]
        ref = {"kind": kind.kind, "namespace": meta.get("namespace", ""), "name": meta["name"], "uid": meta["uid"],
               "apiVersion": kind.api_version, "resourceVersion": meta.get("resourceVersion", "")}
        if not kind.namespaced:
            ref.pop("namespace")
        if field_path:
            ref["fieldPath"] = field_path
        return ref

    def event(self, kind: Kind, obj: Obj, type_: str, reason: str, message: str, *, component: str,
              host: str = "", field_path: str = "") -> None:
        ns = obj["metadata"].get("namespace") or "default"
        ref = self._ref(kind, obj, field_path)
        where = self._similar.get((ns, ref["uid"], reason, message, component, field_path, type_))
        existing = self.api.store.get("events", *where) if where else None
        if existing is not None:
            inv = existing.get("involvedObject") or {}
            if inv.get("uid") == ref["uid"] and existing.get("reason") == reason and \
                    existing.get("message") == message and (existing.get("source") or {}).get("component") == component \
                    and inv.get("fieldPath", "") == field_path and existing.get("type") == type_:
                new = clone(existing)
                new["count"] = int(existing.get("count") or 1) + 1
                new["lastTimestamp"] = kinds.now_iso()
                new["involvedObject"]["resourceVersion"] = ref["resourceVersion"]
                self._write(lambda: self.api.write(EVENT, existing, new, manager=component, trusted=True))
                return
        now = kinds.now_iso()
        source = {"component": component}
        if host:
            source["host"] = host
        body = {"metadata": {"name": f"{obj['metadata']['name']}.{time.time_ns():x}", "namespace": ns},
                "involvedObject": ref, "reason": reason, "message": message, "source": source,
                "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_, "eventTime": None,
                "reportingComponent": component, "reportingInstance": host}
        self._write(lambda: self.api.create(EVENT, ns, body, manager=component))

    def scheduled(self, pod: Obj) -> None:
        ns = pod["metadata"]["namespace"]
        self.scheduler_event(pod, "Normal", "Scheduled", "Binding",
                             f"Successfully assigned {ns}/{pod['metadata']['name']} to {NODE}")

    def scheduler_event(self, pod: Obj, type_: str, reason: str, action: str, message: str) -> None:
        """The scheduler reports through events.k8s.io: eventTime set, legacy timestamps null."""
        ns = pod["metadata"]["namespace"]
        body = {"metadata": {"name": f"{pod['metadata']['name']}.{time.time_ns():x}", "namespace": ns},
                "involvedObject": self._ref(POD, pod), "reason": reason, "message": message,
                "source": {}, "firstTimestamp": None, "lastTimestamp": None, "type": type_,
                "eventTime": kinds.now_micro(), "action": action, "reportingComponent": "default-scheduler",
                "reportingInstance": f"default-scheduler-{NODE}"}
        self._write(lambda: self.api.create(EVENT, ns, body, manager="kube-scheduler"))

    @staticmethod
    def _write(fn: Callable[[], Any]) -> None:
        try:
            fn()
        except ApiError as exc:
            # Events are best effort, as in client-go: a terminating namespace refuses them.
            log.debug("event dropped: %s", exc.message)
