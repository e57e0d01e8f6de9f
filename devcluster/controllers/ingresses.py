"""Ingresses get an address."""
from __future__ import annotations


from ..jsontree import clone
from .base import Controller
from .objects import INGRESS


class IngressController(Controller):
    """Ingresses get an address."""

    def sync_ingress(self, namespace: str, name: str) -> None:
        ing = self.store.get("ingresses.networking.k8s.io", namespace, name)
        if ing is None:
            return
        want = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}
        if ing.get("status") != want:
            new = clone(ing)
            new["status"] = want
            self.api.write(INGRESS, ing, new, manager="ingress-controller", subresource="status", trusted=True)
