"""The garbage collector: dependents of a deleted owner, and foreground deletion."""
from __future__ import annotations

import json

from ..jsontree import clone
from .. import kinds
from ..api import ApiError
from ..kinds import Obj
from .base import Controller


class GarbageCollector(Controller):
    """The garbage collector: dependents of a deleted owner, and foreground deletion."""

    def sync_gc(self, bucket: str, uid: str) -> None:
        for kind, dep in self.api.dependents(uid):
            if any(self._owner_alive(r, dep) for r in dep["metadata"].get("ownerReferences") or []
                   if r.get("uid") != uid):
                continue
            try:
                self.api.delete(kind, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                                propagation="Background")
            except ApiError:
                pass

    def _owner_alive(self, ref: Obj, dependent: Obj) -> bool:
        kind = kinds.kind_by_name(ref.get("apiVersion", ""), ref.get("kind", ""))
        if kind is None:
            return False
        owner = self.api.find(kind, dependent["metadata"].get("namespace", ""), ref.get("name", ""))
        return owner is not None and owner["metadata"]["uid"] == ref.get("uid")

    def sync_foreground(self, bucket: str, key: str) -> None:
        ns, name = json.loads(key)
        obj = self.store.get(bucket, ns, name)
        if obj is None or "foregroundDeletion" not in (obj["metadata"].get("finalizers") or []):
            return
        kind = kinds.kind_for_bucket(bucket)
        remaining = self.api.dependents(obj["metadata"]["uid"])
        for dep_kind, dep in remaining:
            if not dep["metadata"].get("deletionTimestamp"):
                try:
                    self.api.delete(dep_kind, dep["metadata"].get("namespace", ""), dep["metadata"]["name"],
                                    propagation="Foreground")
                except ApiError:
                    pass
        if not self.api.dependents(obj["metadata"]["uid"]):
            new = clone(obj)
            new["metadata"]["finalizers"] = [f for f in obj["metadata"]["finalizers"] if f != "foregroundDeletion"]
            if not new["metadata"]["finalizers"]:
                del new["metadata"]["finalizers"]
            self.api.write(kind, obj, new, manager="kube-controller-manager", trusted=True)
