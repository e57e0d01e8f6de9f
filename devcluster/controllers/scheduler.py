"""The scheduler: binds pods to the one node, or reports why it cannot."""
from __future__ import annotations


from ..jsontree import clone
from .. import volumes
from ..kinds import Obj
from .base import Controller
from .objects import NODE, POD, condition


class SchedulerController(Controller):
    """The scheduler: binds pods to the one node, or reports why it cannot."""

    def sync_schedule(self, namespace: str, name: str) -> None:
        pod = self.store.get("pods", namespace, name)
        if pod is None or (pod.get("spec") or {}).get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return
        reason = volumes.unschedulable_reason(self.api, pod)
        if reason is not None:
            self._unschedulable(pod, reason)
            return
        bound = clone(pod)
        bound["spec"]["nodeName"] = NODE
        pod = self.api.write(POD, pod, bound, manager="kube-scheduler", trusted=True, subresource="binding")
        scheduled = clone(pod)
        scheduled.setdefault("status", {})["conditions"] = [
            condition("PodScheduled", "True", "", "", None, update_time=False, probe=True)]
        stored = self.api.write(POD, pod, scheduled, manager="kube-scheduler", subresource="status", trusted=True)
        self.recorder.scheduled(stored)

    def _unschedulable(self, pod: Obj, message: str) -> None:
        """PodScheduled=False and a FailedScheduling event, once per distinct verdict.

        The real scheduler repeats the event when it retries (at most every few minutes); reporting
        each new verdict once keeps the resync's retries from flooding the namespace with events.
        """
        conds = (pod.get("status") or {}).get("conditions") or []
        current = next((c for c in conds if c.get("type") == "PodScheduled"), None)
        if current and current.get("status") == "False" and current.get("message") == message:
            return
        new = clone(pod)
        status = new.setdefault("status", {})
        status["phase"] = "Pending"
        status["conditions"] = [c for c in conds if c.get("type") != "PodScheduled"] + [
            condition("PodScheduled", "False", "Unschedulable", message, conds, update_time=False, probe=True)]
        stored = self.api.write(POD, pod, new, manager="kube-scheduler", subresource="status", trusted=True)
        self.recorder.scheduler_event(stored, "Warning", "FailedScheduling", "Scheduling", message)
