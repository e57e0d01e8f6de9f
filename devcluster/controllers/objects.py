"""The kinds the controllers write, and what they need of objects: owner references, conditions,
status pruning, the pod template hash."""
from __future__ import annotations

import json

from .. import kinds
from ..kinds import Kind, Obj, find_kind

NODE = "devcluster"
HOST_IP = "172.18.0.2"

POD = find_kind("v1", "pods")
NAMESPACE = find_kind("v1", "namespaces")
EVENT = find_kind("v1", "events")
SERVICE = find_kind("v1", "services")
SECRET = find_kind("v1", "secrets")
SERVICE_ACCOUNT = find_kind("v1", "serviceaccounts")
CONFIGMAP = find_kind("v1", "configmaps")
QUOTA = find_kind("v1", "resourcequotas")
DEPLOYMENT = find_kind("apps/v1", "deployments")
REPLICASET = find_kind("apps/v1", "replicasets")
JOB = find_kind("batch/v1", "jobs")
INGRESS = find_kind("networking.k8s.io/v1", "ingresses")
NODE_KIND = find_kind("v1", "nodes")
assert all((NODE_KIND, POD, NAMESPACE, EVENT, SERVICE, SECRET, SERVICE_ACCOUNT, CONFIGMAP, QUOTA, DEPLOYMENT, REPLICASET,
            JOB, INGRESS))

ROOT_CA = ("-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAVMRMwEQYDVQQDEwprdWJlcm5l\n"
           "dGVzMB4XDTI0MDEwMTAwMDAwMFoXDTM0MDEwMTAwMDAwMFowFTETMBEGA1UEAxMK\na3ViZXJuZXRlczAKBggqhkjOPQQDAgNI"
           "ADBFAiEAdevclusterdevclusterdevcluster\n-----END CERTIFICATE-----\n")


def strip_zero(status: Obj, keep: tuple[str, ...] = ()) -> Obj:
    """Go's omitempty: zero counters vanish from status."""
    return {k: v for k, v in status.items() if k in keep or v not in (0, None, [], {})}


def owner_ref(kind: Kind, obj: Obj) -> Obj:
    return {"apiVersion": kind.api_version, "kind": kind.kind, "name": obj["metadata"]["name"],
            "uid": obj["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}


def controller_uid(obj: Obj) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _safe_encode(text: str) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(alphabet[b % len(alphabet)] for b in text.encode())


def pod_template_hash(template: Obj, collision_count: int = 0) -> str:
    """fnv32a over the template, encoded like the deployment controller's ComputeHash."""
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return _safe_encode(str(h))


def condition(type_: str, status: str, reason: str, message: str, previous: list[Obj] | None,
               *, update_time: bool = True, probe: bool = False) -> Obj:
    """A condition that keeps lastTransitionTime while its status does not change."""
    now = kinds.now_iso()
    old = next((c for c in previous or [] if c.get("type") == type_), None)
    out: Obj = {"type": type_, "status": status}
    if probe:
        out["lastProbeTime"] = None
    if update_time:
        same = old and old.get("status") == status and old.get("reason") == reason and old.get("message") == message
        out["lastUpdateTime"] = old["lastUpdateTime"] if same and old.get("lastUpdateTime") else now
    out["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == status and \
        old.get("lastTransitionTime") else now
    if reason:
        out["reason"] = reason
    if message:
        out["message"] = message
    return out


def job_finished(job: Obj) -> bool:
    return any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
               for c in (job.get("status") or {}).get("conditions") or [])


def pod_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
