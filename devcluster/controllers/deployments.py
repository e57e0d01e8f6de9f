"""Deployments: ReplicaSets per template, rollouts, history cleanup and status."""
from __future__ import annotations

import math
import time
from typing import Any

from ..jsontree import clone
from .. import kinds
from ..api import ApiError
from ..kinds import Obj
from .base import Controller
from .objects import DEPLOYMENT, REPLICASET, condition, owner_ref, pod_template_hash, strip_zero


class DeploymentController(Controller):
    """Deployments: ReplicaSets per template, rollouts, history cleanup and status."""

    def sync_deployment(self, namespace: str, name: str) -> None:
        d = self.store.get("deployments.apps", namespace, name)
        if d is None or d["metadata"].get("deletionTimestamp"):
            return
        uid = d["metadata"]["uid"]
        rses = self.store.controlled("replicasets.apps", uid)
        template = clone(d["spec"]["template"])
        tmpl_hash = pod_template_hash(template, (d.get("status") or {}).get("collisionCount", 0))
        new_rs = next((rs for rs in rses if _same_template(rs["spec"]["template"], template)), None)
        old_rses = [rs for rs in rses if rs is not new_rs]
        replicas = d["spec"].get("replicas", 1)
        paused = d["spec"].get("paused", False)
        created = False
        if new_rs is None and not paused:
            new_rs = self._create_rs(d, template, tmpl_hash, old_rses)
            created = new_rs is not None
            if new_rs is None:
                return
        if new_rs is not None and not paused:
            self._sync_revision(d, new_rs, old_rses)
            self._rollout(d, new_rs, old_rses, replicas)
        self._cleanup(d, [rs for rs in old_rses if self.store.get("replicasets.apps", namespace,
                                                                   rs["metadata"]["name"])])
        self._deployment_status(d, new_rs, old_rses, created)

    def _create_rs(self, d: Obj, template: Obj, tmpl_hash: str, old_rses: list[Obj]) -> Obj | None:
        ns = d["metadata"]["namespace"]
        revision = max([int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
                        for rs in old_rses] + [0]) + 1
        template.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = tmpl_hash
        selector = clone(d["spec"]["selector"])
        selector.setdefault("matchLabels", {})["pod-template-hash"] = tmpl_hash
        replicas = d["spec"].get("replicas", 1)
        max_surge = _resolve_percent(((d["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", 0),
                                     replicas, True)
        total = sum(rs["spec"].get("replicas", 0) for rs in old_rses)
        if d["spec"]["strategy"].get("type") == "Recreate":
            start = 0 if any(self._owned_pods(rs) for rs in old_rses) or total else replicas
        else:
            start = max(0, min(replicas, replicas + max_surge - total))
        labels = dict((d["spec"]["template"].get("metadata") or {}).get("labels") or {})
        labels["pod-template-hash"] = tmpl_hash
        annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
                       if not k.startswith("deployment.kubernetes.io/") and k != "kubectl.kubernetes.io/last-applied-configuration"}
        annotations.update({"deployment.kubernetes.io/desired-replicas": str(replicas),
                            "deployment.kubernetes.io/max-replicas": str(replicas + max_surge),
                            "deployment.kubernetes.io/revision": str(revision)})
        body = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": f"{d['metadata']['name']}-{tmpl_hash}", "namespace": ns, "labels": labels,
                             "annotations": annotations, "ownerReferences": [owner_ref(DEPLOYMENT, d)]},
                "spec": {"replicas": start, "selector": selector, "template": template,
                         **({"minReadySeconds": d["spec"]["minReadySeconds"]} if d["spec"].get("minReadySeconds")
                            else {})}}
        try:
            rs = self.api.create(REPLICASET, ns, body, manager="kube-controller-manager")
        except ApiError as exc:
            self.recorder.event(DEPLOYMENT, d, "Warning", "FailedCreate", f"Failed to create new replica set "
                                f"\"{body['metadata']['name']}\": {exc.message}", component="deployment-controller")
            return None
        self.recorder.event(DEPLOYMENT, d, "Normal", "ScalingReplicaSet",
                            f"Scaled up replica set {rs['metadata']['name']} to {start}",
                            component="deployment-controller")
        return rs

    def _sync_revision(self, d: Obj, new_rs: Obj, old_rses: list[Obj]) -> None:
        ann = new_rs["metadata"].get("annotations") or {}
        max_old = max([int((rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision", 0))
                       for rs in old_rses] + [0])
        revision = int(ann.get("deployment.kubernetes.io/revision", 0))
        if revision <= max_old:
            revision = max_old + 1
            rs = clone(new_rs)
            rs["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
            self.api.write(REPLICASET, new_rs, rs, manager="kube-controller-manager", trusted=True)
        current = self.store.get("deployments.apps", d["metadata"]["namespace"], d["metadata"]["name"])
        if current is not None and (current["metadata"].get("annotations") or {}).get(
                "deployment.kubernetes.io/revision") != str(revision):
            new = clone(current)
            new["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = str(revision)
            # The real controller writes this annotation through UpdateStatus, so generation stays.
            self.api.write(DEPLOYMENT, current, new, manager="kube-controller-manager", subresource="status",
                           trusted=True)

    def _scale_rs(self, d: Obj, rs: Obj, to: int) -> None:
        current = self.store.get("replicasets.apps", rs["metadata"]["namespace"], rs["metadata"]["name"])
        if current is None:
            return
        old = current["spec"].get("replicas", 1)
        if old == to:
            return
        new = clone(current)
        new["spec"]["replicas"] = to
        ann = new["metadata"].setdefault("annotations", {})
        replicas = d["spec"].get("replicas", 1)
        max_surge = _resolve_percent(((d["spec"].get("strategy") or {}).get("rollingUpdate") or {}).get("maxSurge", 0),
                                     replicas, True)
        ann["deployment.kubernetes.io/desired-replicas"] = str(replicas)
        ann["deployment.kubernetes.io/max-replicas"] = str(replicas + max_surge)
        self.api.write(REPLICASET, current, new, manager="kube-controller-manager", trusted=True)
        direction = "up" if to > old else "down"
        self.recorder.event(DEPLOYMENT, d, "Normal", "ScalingReplicaSet",
                            f"Scaled {direction} replica set {rs['metadata']['name']} to {to} from {old}",
                            component="deployment-controller")

    def _rollout(self, d: Obj, new_rs: Obj, old_rses: list[Obj], replicas: int) -> None:
        strategy = d["spec"].get("strategy") or {}
        old_active = [rs for rs in old_rses if rs["spec"].get("replicas", 0) > 0]
        if strategy.get("type") == "Recreate":
            for rs in old_active:
                self._scale_rs(d, rs, 0)
            if any(self._owned_pods(rs) for rs in old_rses):
                return
            self._scale_rs(d, new_rs, replicas)
            return
        if not old_active:
            self._scale_rs(d, new_rs, replicas)
            return
        ru = strategy.get("rollingUpdate") or {}
        max_surge = _resolve_percent(ru.get("maxSurge", "25%"), replicas, True)
        max_unavailable = _resolve_percent(ru.get("maxUnavailable", "25%"), replicas, False)
        if max_surge == 0 and max_unavailable == 0:
            max_unavailable = 1
        new_count = new_rs["spec"].get("replicas", 0)
        total = new_count + sum(rs["spec"].get("replicas", 0) for rs in old_active)
        # Scale up the new replica set within the surge budget.
        if new_count < replicas:
            room = replicas + max_surge - total
            if room > 0:
                target = min(replicas, new_count + room)
                self._scale_rs(d, new_rs, target)
                new_count = target
        # Scale down old replica sets as far as availability allows; unavailable pods go first.
        new_ready = _rs_available(self.store.get("replicasets.apps", new_rs["metadata"]["namespace"],
                                                 new_rs["metadata"]["name"]) or new_rs)
        old_ready = sum(_rs_available(rs) for rs in old_active)
        min_available = replicas - max_unavailable
        budget = new_ready + old_ready - min_available
        for rs in sorted(old_active, key=lambda r: r["metadata"]["creationTimestamp"]):
            count = rs["spec"].get("replicas", 0)
            unhealthy = count - _rs_available(rs)
            cut = min(count, unhealthy + max(budget, 0))
            if cut <= 0:
                continue
            budget -= max(cut - unhealthy, 0)
            self._scale_rs(d, rs, count - cut)

    def _cleanup(self, d: Obj, old_rses: list[Obj]) -> None:
        limit = d["spec"].get("revisionHistoryLimit", 10)
        idle = [rs for rs in old_rses if rs["spec"].get("replicas", 0) == 0 and not self._owned_pods(rs)]
        idle.sort(key=lambda rs: int((rs["metadata"].get("annotations") or {}).get(
            "deployment.kubernetes.io/revision", 0)))
        for rs in idle[:max(0, len(idle) - limit)]:
            try:
                self.api.delete(REPLICASET, rs["metadata"]["namespace"], rs["metadata"]["name"])
            except ApiError:
                pass

    def _deployment_status(self, d: Obj, new_rs: Obj | None, old_rses: list[Obj], created: bool) -> None:
        ns = d["metadata"]["namespace"]
        d = self.store.get("deployments.apps", ns, d["metadata"]["name"]) or d
        fresh = [self.store.get("replicasets.apps", ns, rs["metadata"]["name"]) for rs in old_rses]
        old_rses = [rs for rs in fresh if rs is not None]
        if new_rs is not None:
            new_rs = self.store.get("replicasets.apps", ns, new_rs["metadata"]["name"]) or new_rs
        all_rs = old_rses + ([new_rs] if new_rs else [])
        replicas = d["spec"].get("replicas", 1)
        total = sum((rs.get("status") or {}).get("replicas", 0) for rs in all_rs)
        updated = (new_rs.get("status") or {}).get("replicas", 0) if new_rs else 0
        ready = sum((rs.get("status") or {}).get("readyReplicas", 0) for rs in all_rs)
        available = sum(_rs_available(rs) for rs in all_rs)
        ru = (d["spec"].get("strategy") or {}).get("rollingUpdate") or {}
        max_unavailable = _resolve_percent(ru.get("maxUnavailable", "25%"), replicas, False) \
            if d["spec"]["strategy"].get("type") != "Recreate" else 0
        old_status = d.get("status") or {}
        conds = old_status.get("conditions") or []
        if available >= replicas - max_unavailable:
            available_cond = condition("Available", "True", "MinimumReplicasAvailable",
                                        "Deployment has minimum availability.", conds)
        else:
            available_cond = condition("Available", "False", "MinimumReplicasUnavailable",
                                        "Deployment does not have minimum availability.", conds)
        rs_name = new_rs["metadata"]["name"] if new_rs else ""
        complete = new_rs is not None and updated == replicas and available == replicas and total == replicas \
            and (new_rs.get("status") or {}).get("availableReplicas", 0) == replicas
        previous = next((c for c in conds if c.get("type") == "Progressing"), None)
        if d["spec"].get("paused"):
            progressing = condition("Progressing", "Unknown", "DeploymentPaused", "Deployment is paused", conds)
        elif complete:
            progressing = condition("Progressing", "True", "NewReplicaSetAvailable",
                                     f'ReplicaSet "{rs_name}" has successfully progressed.', conds)
        elif previous and previous.get("reason") == "ProgressDeadlineExceeded" and \
                f'"{rs_name}"' in previous.get("message", ""):
            progressing = previous
        elif created or previous is None:
            progressing = condition("Progressing", "True", "NewReplicaSetCreated" if created else "FoundNewReplicaSet",
                                     f'Created new replica set "{rs_name}"' if created else
                                     f'Found new replica set "{rs_name}"', conds)
        else:
            progressing = condition("Progressing", "True", "ReplicaSetUpdated",
                                     f'ReplicaSet "{rs_name}" is progressing.', conds)
            changed = (total, updated, ready, available) != (old_status.get("replicas", 0),
                                                             old_status.get("updatedReplicas", 0),
                                                             old_status.get("readyReplicas", 0),
                                                             old_status.get("availableReplicas", 0))
            # Progress (any count moving) restarts the progress deadline clock.
            if changed:
                progressing["lastUpdateTime"] = kinds.now_iso()
            deadline = d["spec"].get("progressDeadlineSeconds", 600)
            since = kinds.parse_iso(progressing["lastUpdateTime"])
            if deadline is not None and time.time() - since > deadline:
                progressing = condition("Progressing", "False", "ProgressDeadlineExceeded",
                                         f'ReplicaSet "{rs_name}" has timed out progressing.', conds)
        status = strip_zero({
            "observedGeneration": d["metadata"].get("generation", 1),
            "replicas": total, "updatedReplicas": updated, "readyReplicas": ready, "availableReplicas": available,
            "unavailableReplicas": max(replicas - available, 0) if total or replicas else 0,
        })
        status["conditions"] = [available_cond, progressing]
        if old_status.get("collisionCount"):
            status["collisionCount"] = old_status["collisionCount"]
        if status != old_status:
            new = clone(d)
            new["status"] = status
            self.api.write(DEPLOYMENT, d, new, manager="kube-controller-manager", subresource="status", trusted=True)


def _resolve_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.endswith("%"):
        pct = int(value[:-1]) * total / 100
        return math.ceil(pct) if round_up else math.floor(pct)
    return int(value or 0)


def _rs_available(rs: Obj) -> int:
    return (rs.get("status") or {}).get("availableReplicas", 0)


def _same_template(rs_template: Obj, template: Obj) -> bool:
    a = clone(rs_template)
    labels = (a.get("metadata") or {}).get("labels") or {}
    labels.pop("pod-template-hash", None)
    if "labels" in (a.get("metadata") or {}) and not labels and not (template.get("metadata") or {}).get("labels"):
        a["metadata"].pop("labels")
    return a == template
