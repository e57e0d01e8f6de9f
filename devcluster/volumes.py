"""PersistentVolumeClaims as a cluster with a default dynamic provisioner serves them.

The admission plugins kube-apiserver runs on claims (DefaultStorageClass, StorageObjectInUseProtection,
PersistentVolumeClaimResize) and the questions the scheduler and the pvc-protection controller ask of
them. The controllers that act on the answers live in controllers/claims.py.
"""
from __future__ import annotations

from . import kinds
from .api import Api, forbidden
from .kinds import Kind, Obj, find_kind

CLAIM = find_kind("v1", "persistentvolumeclaims")
STORAGE_CLASS = find_kind("storage.k8s.io/v1", "storageclasses")
assert CLAIM and STORAGE_CLASS

PROTECTION_FINALIZER = "kubernetes.io/pvc-protection"
DEFAULT_CLASS_ANNOTATIONS = ("storageclass.kubernetes.io/is-default-class",
                             "storageclass.beta.kubernetes.io/is-default-class")
# kind names its default class `standard`; the provisioner's name is what the claims' annotations show.
DEFAULT_CLASS = "standard"
PROVISIONER = "rancher.io/local-path"
PREEMPTION_NOT_HELPFUL = "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."


def default_class_manifest() -> Obj:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": DEFAULT_CLASS,
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": PROVISIONER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": True}


def ensure_default_class(api: Api) -> None:
    """Serve the default class from the start, as kind's installer creates its own."""
    if api.find(STORAGE_CLASS, "", DEFAULT_CLASS) is None:
        api.create(STORAGE_CLASS, "", default_class_manifest(), manager="kube-apiserver")


def default_class(api: Api) -> Obj | None:
    """The class marked default; with several, the newest, as the DefaultStorageClass plugin picks."""
    marked = [sc for sc in api.store.list(STORAGE_CLASS.bucket)
              if any((sc["metadata"].get("annotations") or {}).get(a) == "true" for a in DEFAULT_CLASS_ANNOTATIONS)]
    if not marked:
        return None
    return max(marked, key=lambda sc: (sc["metadata"].get("creationTimestamp", ""), sc["metadata"]["name"]))


def storage_request(claim: Obj) -> str | None:
    return (((claim.get("spec") or {}).get("resources") or {}).get("requests") or {}).get("storage")


def admit(api: Api, kind: Kind, obj: Obj, old: Obj | None) -> None:
    """DefaultStorageClass and StorageObjectInUseProtection on create, PersistentVolumeClaimResize on update."""
    if kind.kind != "PersistentVolumeClaim":
        return
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    if old is None:
        # Only an absent class is defaulted: "" asks for no class (pre-provisioned volumes only).
        if spec.get("storageClassName") is None:
            sc = default_class(api)
            if sc is not None:
                spec["storageClassName"] = sc["metadata"]["name"]
        finalizers = meta.setdefault("finalizers", [])
        if PROTECTION_FINALIZER not in finalizers:
            finalizers.append(PROTECTION_FINALIZER)
        return
    new_size, old_size = kinds.parse_quantity(storage_request(obj)), kinds.parse_quantity(storage_request(old))
    if new_size is None or old_size is None or new_size <= old_size:
        return
    if (old.get("status") or {}).get("phase") != "Bound":
        raise forbidden(kind, meta["name"], "Only bound persistent volume claims can be expanded")
    class_name = (old.get("spec") or {}).get("storageClassName") or ""
    sc = api.find(STORAGE_CLASS, "", class_name) if class_name else None
    if sc is None or not sc.get("allowVolumeExpansion"):
        raise forbidden(kind, meta["name"], "only dynamically provisioned pvc can be resized and the storageclass "
                                            "that provisions the pvc must support resize")


def claim_names(pod: Obj) -> list[str]:
    return [v["persistentVolumeClaim"]["claimName"] for v in (pod.get("spec") or {}).get("volumes") or []
            if isinstance(v.get("persistentVolumeClaim"), dict) and v["persistentVolumeClaim"].get("claimName")]


def unschedulable_reason(api: Api, pod: Obj) -> str | None:
    """The VolumeBinding plugin's PreFilter verdict on the pod's claims, or None when they let it schedule.

    Worded as kube-scheduler's FitError for a one-node cluster: the PreFilter message, then what
    preemption (which cannot help with volumes) adds.
    """
    namespace = pod["metadata"]["namespace"]
    unbound = False
    for name in claim_names(pod):
        claim = api.find(CLAIM, namespace, name)
        if claim is None:
            return f'0/1 nodes are available: persistentvolumeclaim "{name}" not found. {PREEMPTION_NOT_HELPFUL}'
        if claim["metadata"].get("deletionTimestamp"):
            return f'0/1 nodes are available: persistentvolumeclaim "{name}" is being deleted. {PREEMPTION_NOT_HELPFUL}'
        if (claim.get("status") or {}).get("phase") != "Bound":
            unbound = True
    if unbound:
        return f"0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. {PREEMPTION_NOT_HELPFUL}"
    return None


def claim_in_use(api: Api, claim: Obj) -> bool:
    """The pvc-protection controller's test: a scheduled pod that has not finished mounts the claim."""
    name = claim["metadata"]["name"]
    for pod in api.store.list("pods", claim["metadata"]["namespace"]):
        if not (pod.get("spec") or {}).get("nodeName"):
            continue  # the kubelet never saw it, and will refuse to start it now
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        if name in claim_names(pod):
            return True
    return False
