"""ReplicaSets: pods created and deleted to the wanted count."""
from __future__ import annotations


from ..jsontree import clone
from .. import kinds
from ..api import ApiError
from ..kinds import Obj
from .base import Controller
from .objects import POD, REPLICASET, pod_ready, strip_zero


class ReplicaSetController(Controller):
    """ReplicaSets: pods created and deleted to the wanted count."""

    def sync_replicaset(self, namespace: str, name: str) -> None:
        rs = self.store.get("replicasets.apps", namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return
        pods = self._owned_pods(rs)
        active = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                  and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        want = rs["spec"].get("replicas", 1)
        if len(active) < want:
            for _ in range(want - len(active)):
                if not self._create_pod_for(rs):
                    break
        elif len(active) > want:
            # Not-ready, not-running and younger pods go first, as the real controller ranks them.
            ranked = sorted(active, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
            ranked = sorted(ranked, key=lambda p: (pod_ready(p), (p.get("status") or {}).get("phase") == "Running"))
            for pod in ranked[:len(active) - want]:
                try:
                    self.api.delete(POD, namespace, pod["metadata"]["name"])
                    self.recorder.event(REPLICASET, rs, "Normal", "SuccessfulDelete",
                                        f"Deleted pod: {pod['metadata']['name']}", component="replicaset-controller")
                except ApiError:
                    pass
        pods = [p for p in self._owned_pods(rs) if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        ready = [p for p in live if pod_ready(p)]
        labels = (rs["spec"]["template"].get("metadata") or {}).get("labels") or {}
        status = strip_zero({
            "replicas": len(live),
            "fullyLabeledReplicas": sum(1 for p in live if all(
                (p["metadata"].get("labels") or {}).get(k) == v for k, v in labels.items())),
            "readyReplicas": len(ready), "availableReplicas": len(ready),
            "terminatingReplicas": None,
            "observedGeneration": rs["metadata"].get("generation", 1),
        }, keep=("replicas",))
        conds = [c for c in (rs.get("status") or {}).get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        failure = (rs.get("status") or {}).get("conditions") or []
        if len(active) < want and any(c.get("type") == "ReplicaFailure" for c in failure):
            conds = failure
        if conds:
            status["conditions"] = conds
        if rs.get("status") != status:
            new = clone(rs)
            new["status"] = status
            self.api.write(REPLICASET, rs, new, manager="kube-controller-manager", subresource="status", trusted=True)

    def _replica_failure(self, rs: Obj, message: str) -> None:
        rs = self.store.get("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"]) or rs
        status = clone(rs.get("status") or {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "ReplicaFailure"]
        conds.append({"type": "ReplicaFailure", "status": "True", "lastTransitionTime": kinds.now_iso(),
                      "reason": "FailedCreate", "message": message})
        status["conditions"] = conds
        new = clone(rs)
        new["status"] = status
        self.api.write(REPLICASET, rs, new, manager="kube-controller-manager", subresource="status", trusted=True)
