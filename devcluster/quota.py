"""ResourceQuota: usage accounting and the admission check, with kube-apiserver's messages."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any
from weakref import WeakKeyDictionary

from . import kinds
from .api import forbidden
from .kinds import Kind, Obj
from .store import Change, Store

_COMPUTE = {"requests.cpu": ("requests", "cpu"), "cpu": ("requests", "cpu"),
            "requests.memory": ("requests", "memory"), "memory": ("requests", "memory"),
            "limits.cpu": ("limits", "cpu"), "limits.memory": ("limits", "memory"),
            "requests.ephemeral-storage": ("requests", "ephemeral-storage"),
            "limits.ephemeral-storage": ("limits", "ephemeral-storage")}
# The resources a pod must state explicitly once a quota constrains them (a long-standing rule).
_MUST_SPECIFY = {"requests.cpu", "cpu", "requests.memory", "memory", "limits.cpu", "limits.memory"}
_OBJECT_COUNTS = {"services": "services", "secrets": "secrets", "configmaps": "configmaps",
                  "resourcequotas": "resourcequotas", "persistentvolumeclaims": "persistentvolumeclaims"}
# Per-class claim quotas: "<class>.storageclass.storage.k8s.io/requests.storage" and ".../persistentvolumeclaims".
_CLASS_SUFFIX = ".storageclass.storage.k8s.io/"


def pod_counts(pod: Obj) -> bool:
    """Whether the pod counts against its namespace's quota: until it has finished."""
    return (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed")


def changes_pod_usage(change: Change) -> bool:
    """Whether a pod's change can change what its namespace uses: the pod came, went or finished.
    A pod's requests and limits stay as they were created; its status changes all the time, and
    a quota's controller need not look at each of those."""
    return change.type != "MODIFIED" or change.prev is None or pod_counts(change.prev) != pod_counts(change.obj)


# A pod's requests and limits do not change once it exists: its usage is worked out once, not at
# every admission in its namespace (a namespace of 900 pods would otherwise parse 900 pods' worth
# of quantities for each new one). Bounded; a pod forgotten is only worked out again.
_USAGE_CACHE: OrderedDict[str, dict[str, float]] = OrderedDict()
_USAGE_CACHE_SIZE = 50_000


def pod_usage(pod: Obj) -> dict[str, float]:
    """Requested amounts of one pod: max(sum of containers, any init container), per resource."""
    uid = (pod.get("metadata") or {}).get("uid")
    if not uid:
        return _pod_usage(pod)
    usage = _USAGE_CACHE.get(uid)
    if usage is None:
        usage = _USAGE_CACHE[uid] = _pod_usage(pod)
        if len(_USAGE_CACHE) > _USAGE_CACHE_SIZE:
            _USAGE_CACHE.popitem(last=False)
    return usage


def _pod_usage(pod: Obj) -> dict[str, float]:
    spec = pod.get("spec") or {}
    out: dict[str, float] = {"pods": 1.0, "count/pods": 1.0}
    for rname, (section, resource) in _COMPUTE.items():
        total = 0.0
        for c in spec.get("containers") or []:
            total += kinds.parse_quantity(((c.get("resources") or {}).get(section) or {}).get(resource, 0)) or 0.0
        for c in spec.get("initContainers") or []:
            value = kinds.parse_quantity(((c.get("resources") or {}).get(section) or {}).get(resource, 0)) or 0.0
            total = max(total, value)
        out[rname] = total
    return out


def claim_usage(claim: Obj) -> dict[str, float]:
    """What one PersistentVolumeClaim charges: itself, and its requested storage (also per storage class)."""
    spec = claim.get("spec") or {}
    storage = kinds.parse_quantity(((spec.get("resources") or {}).get("requests") or {}).get("storage")) or 0.0
    out = {"persistentvolumeclaims": 1.0, "count/persistentvolumeclaims": 1.0, "requests.storage": storage}
    class_name = spec.get("storageClassName")
    if class_name:
        out[f"{class_name}{_CLASS_SUFFIX}persistentvolumeclaims"] = 1.0
        out[f"{class_name}{_CLASS_SUFFIX}requests.storage"] = storage
    return out


def _count_bucket(rname: str) -> str | None:
    if rname in _OBJECT_COUNTS:
        return _OBJECT_COUNTS[rname]
    if rname.startswith("count/"):
        return rname.removeprefix("count/")
    return None


def usage(store: Store, namespace: str, hard: dict[str, Any], *, format_like: dict[str, Any]) -> dict[str, str]:
    totals = _raw_usage(store, namespace, hard)
    return {r: _format(totals[r], format_like.get(r, "")) for r in hard}


class PodTotals:
    """Per namespace, the summed usage of the pods that count against a quota, kept up to date
    as pods change: an admission reads its namespace's sum instead of adding up every pod in it
    (a namespace of 900 pods would cost 900 pods' worth of work per new pod).

    A namespace is summed in full the first time it is asked for, and from then on moved by each
    pod change the store reports. When its last counted pod goes, its entry goes too, so that
    rounding never builds up in a namespace that empties and fills again."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._totals: dict[str, dict[str, float]] = {}
        store.listeners.append(self._observe)

    def of(self, namespace: str) -> dict[str, float]:
        totals = self._totals.get(namespace)
        if totals is None:
            totals = self._totals[namespace] = {}
            for pod in self.store.iter_namespace("pods", namespace):
                if pod_counts(pod):
                    self._add(totals, pod, 1.0)
        return totals

    def _observe(self, change: Change) -> None:
        if change.bucket != "pods":
            return
        namespace = change.obj["metadata"].get("namespace", "")
        totals = self._totals.get(namespace)
        if totals is None:
            return  # summed in full when first asked for
        if change.prev is not None and pod_counts(change.prev):
            self._add(totals, change.prev, -1.0)
        if change.type != "DELETED" and pod_counts(change.obj):
            self._add(totals, change.obj, 1.0)
        if totals.get("pods", 0.0) <= 0.0:
            del self._totals[namespace]

    @staticmethod
    def _add(totals: dict[str, float], pod: Obj, sign: float) -> None:
        for r, v in pod_usage(pod).items():
            totals[r] = totals.get(r, 0.0) + sign * v


# One per store, made on the first admission or quota sync (after the store's state is loaded).
_POD_TOTALS: WeakKeyDictionary[Store, PodTotals] = WeakKeyDictionary()


def pod_totals(store: Store, namespace: str) -> dict[str, float]:
    tracker = _POD_TOTALS.get(store)
    if tracker is None:
        tracker = _POD_TOTALS[store] = PodTotals(store)
    return tracker.of(namespace)


def _raw_usage(store: Store, namespace: str, hard: dict[str, Any]) -> dict[str, float]:
    pods = pod_totals(store, namespace)
    totals = {r: pods.get(r, 0.0) for r in hard}
    for r in hard:
        bucket = _count_bucket(r)
        if bucket and bucket not in ("pods", "persistentvolumeclaims"):
            totals[r] = float(store.count(bucket, namespace))
    for claim in store.list("persistentvolumeclaims", namespace):
        for r, v in claim_usage(claim).items():
            if r in totals:
                totals[r] += v
    return totals


def _format(value: float, like: Any) -> str:
    return kinds.format_quantity(value, str(like))


def _pretty(values: dict[str, str]) -> str:
    return ",".join(f"{k}={values[k]}" for k in sorted(values))


def _claim_growth(obj: Obj, old: Obj) -> dict[str, float]:
    """An update charges a claim only for storage it adds (the evaluator's delta, never negative)."""
    new_usage, old_usage = claim_usage(obj), claim_usage(old)
    return {r: new_usage[r] - old_usage.get(r, 0.0) for r in new_usage
            if r.endswith("requests.storage") and new_usage[r] > old_usage.get(r, 0.0)}


def admit(store: Store, kind: Kind, obj: Obj, old: Obj | None) -> None:
    """Refuse a create (or a claim's growth) that would exceed a quota of its namespace (403, like the quota
    admission plugin)."""
    if not kind.namespaced or (old is not None and kind.kind != "PersistentVolumeClaim"):
        return
    namespace = obj["metadata"].get("namespace", "")
    quotas = store.list("resourcequotas", namespace)
    if not quotas:
        return
    name = obj["metadata"].get("name", "")
    if kind.kind == "Pod":
        requested = pod_usage(obj)
    elif kind.kind == "PersistentVolumeClaim":
        requested = claim_usage(obj) if old is None else _claim_growth(obj, old)
        if not requested:
            return
    else:
        requested = {}
        for r in ("services", "secrets", "configmaps", "resourcequotas", f"count/{kind.resource}"):
            if _count_bucket(r) == kind.resource or (r == f"count/{kind.resource}"):
                requested[r] = 1.0
    for quota in quotas:
        hard = (quota.get("spec") or {}).get("hard") or {}
        qname = quota["metadata"]["name"]
        if kind.kind == "Pod":
            missing = _missing_constraints(obj, set(hard) & _MUST_SPECIFY)
            if missing:
                raise forbidden(kind, name, f"failed quota: {qname}: must specify {missing}")
        relevant = {r: v for r, v in requested.items() if r in hard}
        if not relevant:
            continue
        used = _raw_usage(store, namespace, hard)
        exceeded = sorted(r for r, v in relevant.items()
                          if used[r] + v > (kinds.parse_quantity(hard[r]) or 0.0) + 1e-9)
        if exceeded:
            req = {r: _format(relevant[r], hard[r]) for r in exceeded}
            use = {r: _format(used[r], hard[r]) for r in exceeded}
            lim = {r: str(hard[r]) for r in exceeded}
            raise forbidden(kind, name, f"exceeded quota: {qname}, requested: {_pretty(req)}, used: {_pretty(use)}, "
                                        f"limited: {_pretty(lim)}")


def _missing_constraints(pod: Obj, required: set[str]) -> str:
    missing: dict[str, list[str]] = {}
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        for rname in required:
            section, resource = _COMPUTE[rname]
            if resource not in (res.get(section) or {}):
                missing.setdefault(rname, []).append(c["name"])
    return "; ".join(f"{r} for: {','.join(sorted(missing[r]))}" for r in sorted(missing))
