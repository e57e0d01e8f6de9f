"""The persistentvolume controller with a dynamic provisioner, the volume expander and the
protection finalizer, for PersistentVolumeClaims."""
from __future__ import annotations

import time

from ..jsontree import clone
from .. import kinds, volumes
from ..kinds import Obj
from ..volumes import CLAIM, STORAGE_CLASS
from .base import Controller
from .objects import NODE


class ClaimController(Controller):
    """The persistentvolume controller with a dynamic provisioner, the volume expander and the
protection finalizer, for PersistentVolumeClaims."""

    def sync_claim(self, namespace: str, name: str) -> None:
        """The persistentvolume controller with a dynamic provisioner, the expander and pvc-protection."""
        claim = self.store.get(CLAIM.bucket, namespace, name)
        if claim is None:
            return
        uid = claim["metadata"]["uid"]
        if claim["metadata"].get("deletionTimestamp"):
            self.claim_retry_at.pop(uid, None)
            finalizers = claim["metadata"].get("finalizers") or []
            if volumes.PROTECTION_FINALIZER in finalizers and not volumes.claim_in_use(self.api, claim):
                new = clone(claim)
                new["metadata"]["finalizers"] = [f for f in finalizers if f != volumes.PROTECTION_FINALIZER]
                if not new["metadata"]["finalizers"]:
                    del new["metadata"]["finalizers"]
                self.api.write(CLAIM, claim, new, manager="kube-controller-manager", trusted=True)
            return
        if (claim.get("status") or {}).get("phase") == "Bound":
            self._expand_claim(claim)
            return
        if time.time() < self.claim_retry_at.get(uid, 0):
            return
        self.claim_retry_at[uid] = time.time() + self.claim_retry_seconds
        class_name = (claim.get("spec") or {}).get("storageClassName")
        if not class_name:
            # No class, no provisioning: only a pre-created PersistentVolume could satisfy it.
            self.recorder.event(CLAIM, claim, "Normal", "FailedBinding", "no persistent volumes available for this "
                                "claim and no storage class is set", component="persistentvolume-controller")
            return
        sc = self.api.find(STORAGE_CLASS, "", class_name)
        if sc is None:
            self.recorder.event(CLAIM, claim, "Warning", "ProvisioningFailed",
                                f'storageclass.storage.k8s.io "{class_name}" not found',
                                component="persistentvolume-controller")
            return
        self._provision(claim, sc)

    def _provision(self, claim: Obj, sc: Obj) -> None:
        meta = claim["metadata"]
        provisioner = sc.get("provisioner", "")
        component = f"{provisioner}_local-path-provisioner-{NODE}"
        self.recorder.event(CLAIM, claim, "Normal", "Provisioning", "External provisioner is provisioning volume "
                            f'for claim "{meta["namespace"]}/{meta["name"]}"', component=component)
        volume = f"pvc-{meta['uid']}"
        bound = clone(claim)
        bound["spec"]["volumeName"] = volume
        bound["metadata"].setdefault("annotations", {}).update({
            "pv.kubernetes.io/bind-completed": "yes", "pv.kubernetes.io/bound-by-controller": "yes",
            "volume.beta.kubernetes.io/storage-provisioner": provisioner,
            "volume.kubernetes.io/storage-provisioner": provisioner})
        claim = self.api.write(CLAIM, claim, bound, manager="kube-controller-manager", trusted=True)
        new = clone(claim)
        new["status"] = {"phase": "Bound", "accessModes": list(claim["spec"].get("accessModes") or []),
                         "capacity": {"storage": volumes.storage_request(claim)}}
        stored = self.api.write(CLAIM, claim, new, manager="kube-controller-manager", subresource="status",
                                trusted=True)
        self.claim_retry_at.pop(meta["uid"], None)
        self.recorder.event(CLAIM, stored, "Normal", "ProvisioningSucceeded",
                            f"Successfully provisioned volume {volume}", component=component)

    def _expand_claim(self, claim: Obj) -> None:
        """A grown request becomes the claim's capacity (the resizer and kubelet finish at once here)."""
        request = volumes.storage_request(claim)
        capacity = ((claim.get("status") or {}).get("capacity") or {}).get("storage")
        wanted, have = kinds.parse_quantity(request), kinds.parse_quantity(capacity)
        if wanted is None or (have is not None and wanted <= have):
            return
        new = clone(claim)
        new["status"]["capacity"] = {**(new["status"].get("capacity") or {}), "storage": request}
        self.api.write(CLAIM, claim, new, manager="kube-controller-manager", subresource="status", trusted=True)
        self.recorder.event(CLAIM, claim, "Normal", "FileSystemResizeSuccessful",
                            f'MountVolume.NodeExpandVolume succeeded for volume "{claim["spec"].get("volumeName")}" '
                            f"{NODE}", component="kubelet", host=NODE)
