"""Services of type LoadBalancer get an address."""
from __future__ import annotations


from ..jsontree import clone
from .base import Controller
from .objects import SERVICE


class ServiceController(Controller):
    """Services of type LoadBalancer get an address."""

    def sync_service(self, namespace: str, name: str) -> None:
        svc = self.store.get("services", namespace, name)
        if svc is None or svc["spec"].get("type") != "LoadBalancer":
            return
        want = {"loadBalancer": {"ingress": [{"ip": "127.0.0.1", "ipMode": "VIP"}]}}
        if svc.get("status") != want:
            new = clone(svc)
            new["status"] = want
            self.api.write(SERVICE, svc, new, manager="service-controller", subresource="status", trusted=True)
