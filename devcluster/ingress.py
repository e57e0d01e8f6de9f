"""An emulated ingress controller: the devcluster's Ingress hosts served on a local port.

A real cluster's ingress controller answers for the hosts of its Ingresses; the bundled
cluster has no controller and no network, so nothing answered ale's Access links. This one
routes by the Host header, as ingress-nginx does: the Ingress rule whose host matches (an
exact host, or a `*.domain` wildcard), the path with the longest matching prefix, its
backend Service, a ready pod the Service selects. What it answers is what the emulated pod
"serves": the image's welcome page for a web image, the recent output for a log generator
(whose only product is its log). No Ingress for the host: 404; no ready pod: 503, each with
a page that says so, like a controller's default backend.

Browsers resolve every `*.localhost` name to the loopback address themselves (no DNS), so a
cluster whose ingress domain is `localhost` gets Access links such as
`http://web-abc123.localhost:PORT/` that open here from a browser on the same machine.
"""
from __future__ import annotations

import html
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .podlogs import lines_between
from .runtime_types import ContainerRun
from .selectors import label_matcher, selector_string

if TYPE_CHECKING:
    from .server import DevServer

Obj = dict[str, Any]

INGRESSES = "ingresses.networking.k8s.io"
# A log generator's page: its output of the last minute, at most this many lines.
RECENT_SECONDS = 60.0
RECENT_LINES = 200


def _host_matches(rule_host: str, host: str) -> bool:
    if not rule_host:
        return True  # a rule without a host takes every host
    if rule_host.startswith("*."):
        # A wildcard covers exactly one label, as in the Ingress API.
        head, _, rest = host.partition(".")
        return bool(head) and rest == rule_host[2:]
    return rule_host == host


def _path_matches(path_rule: Obj, path: str) -> int:
    """How well `path_rule` matches `path`: the length of its prefix, -1 when it does not."""
    rule_path = path_rule.get("path") or "/"
    if path_rule.get("pathType") == "Exact":
        return len(rule_path) if path == rule_path else -1
    prefix = rule_path.rstrip("/")
    if not prefix or path == prefix or path.startswith(prefix + "/"):
        return len(prefix)
    return -1


def find_backend(ingresses: list[Obj], host: str, path: str) -> tuple[str, str] | None:
    """(namespace, Service name) of the backend that serves `host` and `path`; None when no
    Ingress rule does. Exact hosts win over wildcards, longer paths over shorter ones."""
    best: tuple[int, int, str, str] | None = None
    for ingress in ingresses:
        if ingress["metadata"].get("deletionTimestamp"):
            continue
        namespace = ingress["metadata"]["namespace"]
        for rule in (ingress.get("spec") or {}).get("rules") or []:
            rule_host = (rule.get("host") or "").lower()
            if not _host_matches(rule_host, host):
                continue
            exact = 2 if rule_host == host else (1 if rule_host else 0)
            for path_rule in (rule.get("http") or {}).get("paths") or []:
                length = _path_matches(path_rule, path)
                service = ((path_rule.get("backend") or {}).get("service") or {}).get("name")
                if length >= 0 and service and (best is None or (exact, length) > best[:2]):
                    best = (exact, length, namespace, service)
    return (best[2], best[3]) if best is not None else None


def _page(status: int, title: str, body: str) -> web.Response:
    text = (
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title></head>"
        f"<body style=\"font-family: sans-serif; margin: 3em auto; max-width: 40em\"><h1>{html.escape(title)}</h1>"
        f"{body}<hr><p><small>devcluster ingress</small></p></body></html>"
    )
    return web.Response(status=status, text=text, content_type="text/html")


def _welcome(run: ContainerRun, service: str) -> web.Response:
    image = run.image.lower()
    if "nginx" in image:
        # The official image's default page, which is what a fresh nginx answers.
        return _page(
            200,
            "Welcome to nginx!",
            "<p>If you see this page, the nginx web server is successfully installed and working.</p>"
            f"<p>Served by pod <code>{html.escape(run.pod)}</code>.</p>",
        )
    return _page(
        200,
        f"Welcome to {service}",
        f"<p>The service <strong>{html.escape(service)}</strong> is running image "
        f"<code>{html.escape(run.image)}</code>.</p><p>Served by pod <code>{html.escape(run.pod)}</code>.</p>",
    )


def _recent_output(run: ContainerRun) -> web.Response:
    now = time.time()
    lines = [text for _, text in lines_between(run, now - RECENT_SECONDS, now)][-RECENT_LINES:]
    body = "\n".join(lines) + ("\n" if lines else "")
    return web.Response(text=body, content_type="text/plain")


class IngressProxy:
    """The emulated controller: its own listener next to the API server, same store."""

    def __init__(self, server: DevServer) -> None:
        self.server = server
        self.runner: web.AppRunner | None = None
        self.port = 0
        self._turn = 0

    async def start(self, port: int = 0) -> int:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0].strip("[]").lower().rstrip(".")
        store = self.server.store
        backend = find_backend(store.list(INGRESSES), host, request.path)
        if backend is None:
            return _page(
                404, "404 Not Found", f"<p>No Ingress of this cluster serves <code>{html.escape(host)}</code>.</p>"
            )
        namespace, name = backend
        service = store.get("services", namespace, name)
        pods = self._ready_pods(namespace, service) if service is not None else []
        if not pods:
            return _page(
                503,
                "503 Service Temporarily Unavailable",
                f"<p>No pod of <strong>{html.escape(name)}</strong> is ready to answer. It may be starting, "
                "stopped or crashing: its Log view says which.</p>",
            )
        # Round robin over the ready pods, as a Service's endpoints spread requests.
        self._turn += 1
        pod = pods[self._turn % len(pods)]
        run = self._current_run(pod)
        if run is None:
            return _page(503, "503 Service Temporarily Unavailable", "<p>The pod's container is not running.</p>")
        if "loggen" in run.image.lower():
            return _recent_output(run)
        return _welcome(run, name)

    def _ready_pods(self, namespace: str, service: Obj) -> list[Obj]:
        selector = (service.get("spec") or {}).get("selector") or {}
        if not selector:
            return []
        matches = label_matcher(selector_string({"matchLabels": selector}))
        pods = [
            pod
            for pod in self.server.store.list("pods", namespace)
            if not pod["metadata"].get("deletionTimestamp")
            and matches(pod["metadata"].get("labels") or {})
            and any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (pod.get("status") or {}).get("conditions") or []
            )
        ]
        return sorted(pods, key=lambda pod: pod["metadata"]["name"])

    def _current_run(self, pod: Obj) -> ContainerRun | None:
        containers = [c["name"] for c in (pod.get("spec") or {}).get("containers") or []]
        if not containers:
            return None
        metadata = pod["metadata"]
        runs = self.server.controllers.kubelet.runs_for(metadata["namespace"], metadata["name"], containers[0])
        if not runs or runs[-1].finished_at is not None:
            return None
        return runs[-1]
