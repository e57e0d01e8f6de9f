"""What every controller of the manager shares: the API, the store, the recorder and the work
queue (set by `ControllerManager`), and the pods an owner (a ReplicaSet, a Job) has."""
from __future__ import annotations

from typing import Callable

from ..jsontree import clone
from ..api import Api, ApiError
from ..kinds import Kind, Obj
from ..store import Store
from .events import Recorder
from .kubelet import Kubelet
from .objects import POD, REPLICASET, owner_ref


class Controller:
    """The state a controller reads, given by `ControllerManager`, which composes one controller per kind."""

    api: Api
    store: Store
    recorder: Recorder
    kubelet: Kubelet
    job_retry_at: dict[str, float]
    claim_retry_at: dict[str, float]
    claim_retry_seconds: float
    enqueue: Callable[[str, str, str], None]  # ControllerManager.enqueue: (controller, namespace, name)
    enqueue_after: Callable[[str, str, str, float], None]  # ControllerManager.enqueue_after: ... and a delay

    def _owned_pods(self, owner: Obj) -> list[Obj]:
        return self.store.controlled("pods", owner["metadata"]["uid"])

    def _create_pod_for(self, owner: Obj, kind: Kind = REPLICASET, extra_labels: dict | None = None) -> bool:
        template = clone(owner["spec"]["template"])
        meta = template.get("metadata") or {}
        meta.pop("creationTimestamp", None)
        meta["generateName"] = owner["metadata"]["name"] + "-"
        meta["namespace"] = owner["metadata"]["namespace"]
        meta["ownerReferences"] = [owner_ref(kind, owner)]
        if extra_labels:
            meta.setdefault("labels", {}).update(extra_labels)
        body = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}
        component = "replicaset-controller" if kind is REPLICASET else "job-controller"
        try:
            pod = self.api.create(POD, owner["metadata"]["namespace"], body, manager="kube-controller-manager")
        except ApiError as exc:
            self.recorder.event(kind, owner, "Warning", "FailedCreate", f"Error creating: {exc.message}",
                                component=component)
            if kind is REPLICASET:
                self._replica_failure(owner, exc.message)
            return False
        self.recorder.event(kind, owner, "Normal", "SuccessfulCreate", f"Created pod: {pod['metadata']['name']}",
                            component=component)
        return True
