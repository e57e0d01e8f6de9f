"""Small factories and waits shared by the client and watcher tests."""

from __future__ import annotations

from typing import Any

import psutil

from clusters.client import KubeClient
from tests.waiting import wait_for

__all__ = ["api_port", "compact", "connections_to", "make_configmap", "make_deployment", "running_pods", "wait_for", "wait_for_running_pod"]

MANAGED = {"app.kubernetes.io/managed-by": "ale"}


def make_configmap(
    namespace: str, name: str, data: dict[str, str] | None = None, *, managed: bool = True, **labels: str
) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace, "labels": {**(MANAGED if managed else {}), **labels}},
        "data": data or {"key": "value"},
    }


def make_deployment(
    namespace: str,
    name: str,
    *,
    image: str = "ghcr.io/ale-demo/web:1.0",
    replicas: int = 1,
    env: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
) -> dict:
    container: dict[str, Any] = {
        "name": "app",
        "image": image,
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    if resources:
        container["resources"] = resources
    labels = {**MANAGED, "app.kubernetes.io/name": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
        },
    }


def connections_to(port: int) -> set[tuple[str, int]]:
    """Local addresses of this process's open connections to `port`."""
    return {
        tuple(c.laddr)
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    }


def api_port(kube: KubeClient) -> int:
    return int(kube.configuration.host.rsplit(":", 1)[1].split("/")[0])


def running_pods(kube: KubeClient, namespace: str, name: str) -> list[dict]:
    pods, _ = kube.list("v1", "Pod", namespace=namespace, label_selector=f"app.kubernetes.io/name={name}")
    return [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def wait_for_running_pod(kube: KubeClient, namespace: str, name: str, timeout: float = 20.0) -> dict:
    return wait_for(lambda: running_pods(kube, namespace, name), timeout=timeout, what=f"a running {name} pod")[0]


def compact(devcluster) -> None:
    """Make every resourceVersion handed out so far too old to watch from, as an etcd
    compaction does. A real cluster cannot be asked for this; the emulator's store can."""
    store = devcluster.server.store
    devcluster.call(lambda: setattr(store, "compacted_rv", store.rv))
