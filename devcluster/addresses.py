"""The cluster IPs and node ports that Services hold, kept up to date from the store's changes.

Allocating an address for a new Service looks its candidates up here instead of reading every
Service of the cluster: a batch of hundreds of Services created at once cost a read of all the
others for each one."""
from __future__ import annotations

from collections import Counter
from typing import Any

from .kinds import Obj
from .store import Change, Store

BUCKET = "services"


def _ips(service: Obj) -> list[str]:
    ip = (service.get("spec") or {}).get("clusterIP")
    return [ip] if ip and ip != "None" else []


def _node_ports(service: Obj) -> list[int]:
    return [p["nodePort"] for p in (service.get("spec") or {}).get("ports") or [] if p.get("nodePort")]


class ServiceAddresses:
    """How many Services hold each cluster IP and each node port.

    Counted in full on first use (after the store's state is loaded) and again when the store
    is loaded anew; from then on, from each change the store reports."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ips: Counter[str] = Counter()
        self._ports: Counter[int] = Counter()
        self._counted_from: Any = None
        store.listeners.append(self._observe)

    def ip_taken(self, ip: str) -> bool:
        self._count_if_needed()
        return self._ips[ip] > 0

    def port_taken(self, port: int) -> bool:
        self._count_if_needed()
        return self._ports[port] > 0

    def _count_if_needed(self) -> None:
        # `Store.load` replaces the buckets without reporting changes: count again after one.
        if self._counted_from is self.store.buckets:
            return
        self._ips.clear()
        self._ports.clear()
        for service in self.store.buckets.get(BUCKET, {}).values():
            self._add(service, 1)
        self._counted_from = self.store.buckets

    def _observe(self, change: Change) -> None:
        if change.bucket != BUCKET or self._counted_from is not self.store.buckets:
            return
        if change.prev is not None:
            self._add(change.prev, -1)
        if change.type != "DELETED":
            self._add(change.obj, 1)

    def _add(self, service: Obj, sign: int) -> None:
        for ip in _ips(service):
            self._ips[ip] += sign
            if self._ips[ip] <= 0:
                del self._ips[ip]
        for port in _node_ports(service):
            self._ports[port] += sign
            if self._ports[port] <= 0:
                del self._ports[port]
