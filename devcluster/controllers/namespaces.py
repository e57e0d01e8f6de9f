"""Namespaces: their defaults (service account, root CA) and their deletion."""
from __future__ import annotations


from ..jsontree import clone
from .. import kinds
from ..api import ApiError
from .base import Controller
from .objects import CONFIGMAP, ROOT_CA, SERVICE_ACCOUNT


class NamespaceController(Controller):
    """Namespaces: their defaults (service account, root CA) and their deletion."""

    def sync_namespace(self, _: str, name: str) -> None:
        ns = self.store.get("namespaces", "", name)
        if ns is None:
            return
        if not ns["metadata"].get("deletionTimestamp"):
            self._ensure_namespace_defaults(name)
            return
        for bucket in list(self.store.buckets):
            if bucket == "namespaces":
                continue
            kind = kinds.kind_for_bucket(bucket)
            for obj in self.store.list(bucket, name):
                if obj["metadata"].get("deletionTimestamp"):
                    continue  # finalizers or a graceful pod stop hold it; the namespace waits
                try:
                    # Pods stop gracefully (Killing events, runs end) before the namespace can go.
                    self.api.delete(kind, name, obj["metadata"]["name"], propagation="Background",
                                    grace_seconds=1 if bucket == "pods" else None)
                except ApiError:
                    pass
        if not any(self.store.list(b, name) for b in list(self.store.buckets) if b != "namespaces"):
            ns = self.store.get("namespaces", "", name) or ns
            if ns["spec"].get("finalizers"):
                new = clone(ns)
                new["spec"]["finalizers"] = []
                self.store.put("namespaces", new)
            self.store.delete("namespaces", "", name)

    def _ensure_namespace_defaults(self, name: str) -> None:
        if self.store.get("serviceaccounts", name, "default") is None:
            self.api.create(SERVICE_ACCOUNT, name, {"metadata": {"name": "default"}}, manager="kube-controller-manager")
        if self.store.get("configmaps", name, "kube-root-ca.crt") is None:
            self.api.create(CONFIGMAP, name, {"metadata": {"name": "kube-root-ca.crt", "annotations": {
                "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when "
                                             "using internal endpoints such as the internal service IP or "
                                             "kubernetes.default.svc. No other usage is guaranteed across "
                                             "distributions of Kubernetes clusters."}},
                                              "data": {"ca.crt": ROOT_CA}}, manager="kube-controller-manager")
