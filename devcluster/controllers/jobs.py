"""Jobs: pods until completion, backoff, deadlines and status."""
from __future__ import annotations

import time

from ..jsontree import clone
from .. import kinds
from ..api import ApiError
from .base import Controller
from .objects import JOB, POD, job_finished, pod_ready, strip_zero


class JobController(Controller):
    """Jobs: pods until completion, backoff, deadlines and status."""

    def sync_job(self, namespace: str, name: str) -> None:
        job = self.store.get("jobs.batch", namespace, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        status = clone(job.get("status") or {})
        if job_finished(job):
            return
        spec = job["spec"]
        pods = self._owned_pods(job)
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
                  and not p["metadata"].get("deletionTimestamp")]
        succeeded = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Succeeded")
        failed_pods = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"]
        restarts = sum(cs.get("restartCount", 0) for p in active
                       for cs in (p.get("status") or {}).get("containerStatuses") or [])
        failed = len(failed_pods)
        status.setdefault("startTime", kinds.now_iso())
        now = kinds.now_iso()
        conds = status.get("conditions") or []
        completions = spec.get("completions", 1)
        finished_reason = None
        if succeeded >= completions:
            for p in active:
                self.api.delete(POD, namespace, p["metadata"]["name"])
            conds = conds + [
                {"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"},
                {"type": "Complete", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods"}]
            status["completionTime"] = now
            active = []
            self.recorder.event(JOB, job, "Normal", "Completed", "Job completed", component="job-controller")
            finished_reason = "Complete"
        elif failed + restarts > spec.get("backoffLimit", 6):
            finished_reason = "BackoffLimitExceeded"
            message = "Job has reached the specified backoff limit"
        elif spec.get("activeDeadlineSeconds") is not None:
            left = kinds.parse_iso(status["startTime"]) + spec["activeDeadlineSeconds"] - time.time()
            if left <= 0:
                finished_reason = "DeadlineExceeded"
                message = "Job was active longer than specified deadline"
            else:
                # Synced again when the deadline passes, as the job controller queues it then.
                self.enqueue_after("job", namespace, name, left + 0.01)
        if finished_reason in ("BackoffLimitExceeded", "DeadlineExceeded"):
            for p in active:
                try:
                    self.api.delete(POD, namespace, p["metadata"]["name"])
                    self.recorder.event(JOB, job, "Normal", "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}",
                                        component="job-controller")
                except ApiError:
                    pass
            active = []
            conds = conds + [
                {"type": "FailureTarget", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": finished_reason, "message": message},
                {"type": "Failed", "status": "True", "lastProbeTime": now, "lastTransitionTime": now,
                 "reason": finished_reason, "message": message}]
            self.recorder.event(JOB, job, "Warning", finished_reason, message, component="job-controller")
        elif finished_reason is None and not spec.get("suspend"):
            want = min(spec.get("parallelism", 1), completions - succeeded)
            if len(active) < want:
                retry_at = self.job_retry_at.get(job["metadata"]["uid"], 0)
                if time.time() >= retry_at:
                    uid = job["metadata"]["uid"]
                    labels = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                              "controller-uid": uid, "job-name": name}
                    for _ in range(want - len(active)):
                        if self._create_pod_for(job, JOB, labels):
                            active.append({})
                    if failed:
                        # Retries back off like the real controller's 10 s, 20 s, … (scaled).
                        delay = self.kubelet.backoff_base * 2 ** min(failed, 6)
                        self.job_retry_at[uid] = time.time() + delay
                else:
                    self.enqueue_after("job", namespace, name, retry_at - time.time() + 0.01)
        ready = sum(1 for p in active if p and pod_ready(p))
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed, "ready": ready,
                       "terminating": 0, "uncountedTerminatedPods": {}, "conditions": conds})
        status = strip_zero(status, keep=("ready", "terminating", "uncountedTerminatedPods"))
        if finished_reason and finished_reason != "Complete":
            status.pop("completionTime", None)
        if status != (job.get("status") or {}):
            new = clone(job)
            new["status"] = status
            self.api.write(JOB, job, new, manager="kube-controller-manager", subresource="status", trusted=True)
