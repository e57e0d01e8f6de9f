"""Polling helpers for contract tests: they run against real clusters too, so never sleep fixed times."""
from __future__ import annotations

import json
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], *, timeout: float = 30.0, interval: float = 0.1,
             message: str = "condition") -> T:
    """Call `probe` until it returns something truthy; return that, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")


def stable_resource_version(read: Callable[[], object], *, quiet: float = 0.4, timeout: float = 30.0) -> str:
    """Wait until controllers stop writing to an object; return its resourceVersion."""
    deadline = time.monotonic() + timeout
    rv = read().metadata.resource_version  # type: ignore[attr-defined]
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = read().metadata.resource_version  # type: ignore[attr-defined]
        if now == rv:
            return rv
        rv = now
    raise AssertionError("object never settled")


def deployment_manifest(name: str, image: str = "nginx:1.27", replicas: int = 1, **container: object) -> dict:
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/managed-by": "ale"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": image, **container}]}}},
    }


def claim_manifest(name: str, storage: str = "1Gi", **spec: object) -> dict:
    """A PersistentVolumeClaim as ale writes a TCP service's disk (extra `spec` fields override)."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/name": name,
                                                  "app.kubernetes.io/managed-by": "ale"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": storage}}, **spec}}


def claimed_pod_manifest(name: str, claim: str) -> dict:
    """A bare pod that mounts `claim` at /data."""
    return {"metadata": {"name": name}, "spec": {
        "containers": [{"name": "app", "image": "nginx:1.27", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}


def db_deployment(name: str, claim: str) -> dict:
    """A one-replica database Deployment whose pods mount `claim` at /data (Recreate: one writer at a time)."""
    manifest = deployment_manifest(name, image="postgres:16", volumeMounts=[{"name": "data", "mountPath": "/data"}])
    manifest["spec"]["strategy"] = {"type": "Recreate"}
    manifest["spec"]["template"]["spec"]["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
    return manifest


def api_error(call: Callable[[], object]) -> tuple[int, dict]:
    """The HTTP status and the Kubernetes Status body of a call that must fail."""
    import pytest
    from kubernetes.client.exceptions import ApiException

    with pytest.raises(ApiException) as info:
        call()
    return info.value.status, json.loads(info.value.body)
