"""metrics.k8s.io/v1beta1 as metrics-server serves it: PodMetrics and NodeMetrics, get and list.

Usage comes from usage.py (a function of each running container's spec and start time), so
`kubectl top pods` and `kubectl top nodes` show numbers that follow what the pods do.
Like metrics-server, only pods with a running container have metrics, only running containers
are listed, and a missing one is a 404 that names it `namespace/name`.
"""
from __future__ import annotations

import json
import time
from typing import Callable

from aiohttp import web

from .api import Api, ApiError
from .controllers.kubelet import Kubelet
from .controllers.objects import NODE, POD
from .kinds import Kind, Obj, iso
from .nodes import NODE_KIND
from .usage import SYSTEM_CPU_CORES, SYSTEM_MEMORY_BYTES, WINDOW_SECONDS, Usage, container_usage

API_VERSION = "metrics.k8s.io/v1beta1"


class Metrics:
    def __init__(self, api: Api, kubelet: Kubelet, *, leak_mib_per_second: float,
                 clock: Callable[[], float] = time.time):
        self.api = api
        self.kubelet = kubelet
        self.leak_mib_per_second = leak_mib_per_second
        self.clock = clock

    # --- usage ---------------------------------------------------------------------------------

    def pod_usage(self, pod: Obj, now: float) -> list[tuple[str, Usage]]:
        """(container, usage) for each running container of the pod, in spec order."""
        uid = pod["metadata"]["uid"]
        runtime = self.kubelet.pods.get(uid)
        if runtime is None:
            return []
        out = []
        for spec in pod["spec"].get("containers") or []:
            state = runtime.containers.get(spec["name"])
            runs = self.kubelet.runs.get(uid, {}).get(spec["name"]) or []
            if state is None or "running" not in state.state or not runs or runs[-1].finished_at is not None:
                continue
            run = runs[-1]
            out.append((spec["name"], container_usage(
                pod=pod["metadata"]["name"], container=spec["name"], image=run.image, env=run.env,
                resources=spec.get("resources") or {}, started_at=run.started_at, now=now,
                default_leak_mib=self.leak_mib_per_second)))
        return out

    def pod_metrics(self, pod: Obj, now: float) -> Obj | None:
        containers = self.pod_usage(pod, now)
        if not containers:
            return None
        meta = pod["metadata"]
        return {"metadata": {"name": meta["name"], "namespace": meta["namespace"],
                             "creationTimestamp": iso(now), "labels": meta.get("labels") or {}},
                "timestamp": iso(now), "window": f"{WINDOW_SECONDS}s",
                "containers": [{"name": name, "usage": usage.as_metrics()} for name, usage in containers]}

    def node_metrics(self, node: Obj, now: float) -> Obj:
        cpu, memory = SYSTEM_CPU_CORES, SYSTEM_MEMORY_BYTES
        for pod in self.api.store.list(POD.bucket):
            if (pod.get("spec") or {}).get("nodeName") != NODE:
                continue
            for _, usage in self.pod_usage(pod, now):
                cpu += usage.cpu_cores
                memory += usage.memory_bytes
        return {"metadata": {"name": node["metadata"]["name"], "creationTimestamp": iso(now),
                             "labels": node["metadata"].get("labels") or {}},
                "timestamp": iso(now), "window": f"{WINDOW_SECONDS}s", "usage": Usage(cpu, memory).as_metrics()}

    # --- HTTP ----------------------------------------------------------------------------------

    async def serve(self, request: web.Request, kind: Kind, namespace: str | None, name: str | None) -> web.Response:
        if request.method not in ("GET", "HEAD"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                           {})
        if request.query.get("watch", "").lower() in ("1", "true"):
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                           {})
        now = self.clock()
        label_selector, field_selector = request.query.get("labelSelector"), request.query.get("fieldSelector")
        if kind.kind == "PodMetrics":
            accepts = self.api.matcher(POD, label_selector, field_selector)
            pods = [p for p in self.api.store.list(POD.bucket, namespace or None) if accepts(p)]
            if name is not None:
                pods = [p for p in pods if p["metadata"]["name"] == name]
            items = [m for m in (self.pod_metrics(p, now) for p in pods) if m is not None]
            missing = f'{namespace}/{name}'
        else:
            accepts = self.api.matcher(NODE_KIND, label_selector, field_selector)
            nodes = [n for n in self.api.store.list(NODE_KIND.bucket) if accepts(n)]
            if name is not None:
                nodes = [n for n in nodes if n["metadata"]["name"] == name]
            items = [self.node_metrics(n, now) for n in nodes]
            missing = name or ""
        if name is not None:
            if not items:
                raise ApiError(404, "NotFound", f'{kind.kind.lower()}.metrics.k8s.io "{missing}" not found',
                               {"name": name, "group": "metrics.k8s.io", "kind": kind.plural})
            return _json({"kind": kind.kind, "apiVersion": API_VERSION, **items[0]})
        return _json({"kind": f"{kind.kind}List", "apiVersion": API_VERSION, "metadata": {}, "items": items})


def _json(body: Obj) -> web.Response:
    return web.Response(body=json.dumps(body).encode(), content_type="application/json")
