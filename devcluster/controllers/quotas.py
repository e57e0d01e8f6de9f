"""ResourceQuotas: their usage, recomputed on every change in the namespace."""
from __future__ import annotations


from ..jsontree import clone
from .base import Controller
from .objects import QUOTA


class QuotaController(Controller):
    """ResourceQuotas: their usage, recomputed on every change in the namespace."""

    def sync_quota(self, namespace: str, _: str) -> None:
        from ..quota import usage

        for quota in self.store.list("resourcequotas", namespace):
            hard = (quota.get("spec") or {}).get("hard") or {}
            used = usage(self.store, namespace, hard, format_like=hard)
            want = {"hard": dict(hard), "used": used} if hard else {}
            if (quota.get("status") or {}) != want:
                new = clone(quota)
                new["status"] = want
                self.api.write(QUOTA, quota, new, manager="kube-controller-manager", subresource="status",
                               trusted=True)
