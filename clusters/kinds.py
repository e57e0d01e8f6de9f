"""The kinds ale talks to: their plural, whether they are namespaced, and their API paths."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Kind:
    prefix: str  # "/api/v1" or "/apis/<group>/<version>"
    plural: str
    namespaced: bool


def _kind(api_version: str, plural: str, namespaced: bool = True) -> Kind:
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return Kind(prefix, plural, namespaced)


# The kinds ale reads and writes. A table instead of discovery: these never move, and a lookup
# per call would double the traffic to a slow cluster.
KINDS: dict[tuple[str, str], Kind] = {
    ("v1", "Namespace"): _kind("v1", "namespaces", namespaced=False),
    ("v1", "Pod"): _kind("v1", "pods"),
    ("v1", "Service"): _kind("v1", "services"),
    ("v1", "Secret"): _kind("v1", "secrets"),
    ("v1", "ConfigMap"): _kind("v1", "configmaps"),
    ("v1", "Event"): _kind("v1", "events"),
    ("v1", "ResourceQuota"): _kind("v1", "resourcequotas"),
    ("v1", "ServiceAccount"): _kind("v1", "serviceaccounts"),
    ("v1", "PersistentVolumeClaim"): _kind("v1", "persistentvolumeclaims"),
    ("apps/v1", "Deployment"): _kind("apps/v1", "deployments"),
    ("apps/v1", "ReplicaSet"): _kind("apps/v1", "replicasets"),
    ("batch/v1", "Job"): _kind("batch/v1", "jobs"),
    ("networking.k8s.io/v1", "NetworkPolicy"): _kind("networking.k8s.io/v1", "networkpolicies"),
    ("networking.k8s.io/v1", "Ingress"): _kind("networking.k8s.io/v1", "ingresses"),
    ("events.k8s.io/v1", "Event"): _kind("events.k8s.io/v1", "events"),
    ("coordination.k8s.io/v1", "Lease"): _kind("coordination.k8s.io/v1", "leases"),
}


def lookup(api_version: str, kind: str) -> Kind:
    try:
        return KINDS[(api_version, kind)]
    except KeyError:
        raise ValueError(f"ale does not manage {kind} ({api_version})") from None


def collection_path(info: Kind, namespace: str | None) -> str:
    """A namespaced kind without a namespace means all namespaces (for list and watch)."""
    if info.namespaced and namespace:
        return f"{info.prefix}/namespaces/{quote(namespace, safe='')}/{info.plural}"
    return f"{info.prefix}/{info.plural}"


def object_path(info: Kind, name: str, namespace: str | None) -> str:
    if info.namespaced and not namespace:
        raise ValueError(f"{info.plural} are namespaced: a namespace is required")
    return f"{collection_path(info, namespace)}/{quote(name, safe='')}"
