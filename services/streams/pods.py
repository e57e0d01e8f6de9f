"""A service's pods as the log viewer and the terminal see them, and the marker lines between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from clusters.client import KubeClient
from clusters.labels import selector_for_service
from services.models import Service
from services.streams.timestamps import is_timestamp

# All-pods mode reads at most this many pods at once: one thread and one connection each.
MAX_PODS = 20


@dataclass(frozen=True)
class PodInfo:
    name: str
    phase: str
    containers: tuple[str, ...]
    restarts: dict[str, int] = field(default_factory=dict)
    running: frozenset[str] = frozenset()
    created: str = ""
    replica_set: str = ""  # the ReplicaSet that made it: where its revision is written
    container_ids: dict[str, str] = field(default_factory=dict)  # a restart changes a container's

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phase": self.phase,
            "containers": list(self.containers),
            "restarts": dict(self.restarts),
            "running": sorted(self.running),
        }


def pod_info(pod: dict) -> PodInfo:
    metadata, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    statuses = status.get("containerStatuses") or []
    return PodInfo(
        name=metadata.get("name", ""),
        phase=status.get("phase", "Unknown"),
        containers=tuple(c.get("name", "") for c in spec.get("containers") or []),
        restarts={s.get("name", ""): int(s.get("restartCount") or 0) for s in statuses},
        container_ids={s.get("name", ""): s.get("containerID", "") for s in statuses if s.get("containerID")},
        running=frozenset(s.get("name", "") for s in statuses if "running" in (s.get("state") or {})),
        created=metadata.get("creationTimestamp") or "",
        replica_set=next(
            (ref.get("name", "") for ref in metadata.get("ownerReferences") or [] if ref.get("kind") == "ReplicaSet"),
            "",
        ),
    )


def list_service_pods(kube: KubeClient, service: Service) -> list[PodInfo]:
    """The service's pods, oldest first: only these may be read or entered.

    Selected by the service's public id label, in the service's own namespace: the browser
    names a pod, never a namespace or a selector, and a name outside this list is refused.
    """
    items, _ = kube.list("v1", "Pod", namespace=service.namespace, label_selector=selector_for_service(service.public_id))
    pods = [pod_info(item) for item in items if not (item.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(pods, key=lambda pod: (pod.created, pod.name))


def pod_revision(kube: KubeClient, namespace: str, replica_set: str) -> str:
    """The Deployment revision a pod runs, from its ReplicaSet ("" when it has none)."""
    if not replica_set:
        return ""
    owner = kube.get("apps/v1", "ReplicaSet", replica_set, namespace) or {}
    return str(((owner.get("metadata") or {}).get("annotations") or {}).get("deployment.kubernetes.io/revision", ""))


def _clock(ts: str) -> str:
    """An RFC 3339 timestamp as the marker lines show it: `2026-12-05 20:41:07 UTC`."""
    return f"{ts[:10]} {ts[11:19]} UTC" if is_timestamp(ts) else ""


def pod_marker(pod: PodInfo, revision: str) -> str:
    """The line between two pods' logs when the view moves on to `pod` (after a redeploy)."""
    parts = [f"Now following pod {pod.name}"]
    if revision:
        parts.append(f"revision {revision}")
    if _clock(pod.created):
        parts.append(f"started {_clock(pod.created)}")
    return "── " + " · ".join(parts) + " ──"


def restart_marker(pod: str, container: str, restarts: int, revision: str, started: str) -> str:
    """The line between two containers' logs when the container restarted (a crash, an OOM kill)."""
    parts = [f"Container {container} restarted (restart {restarts})", f"pod {pod}"]
    if revision:
        parts.append(f"revision {revision}")
    if _clock(started):
        parts.append(f"started {_clock(started)}")
    return "── " + " · ".join(parts) + " ──"


def short_pod_name(pod: str) -> str:
    """The label of a pod's lines in all-pods mode: its random suffix (`web-7d9c-x2x8q` → `x2x8q`)."""
    return pod.rsplit("-", 1)[-1] if "-" in pod else pod
