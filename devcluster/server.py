"""The HTTP face of the devcluster: authentication, discovery, REST verbs, watch streams, logs and exec."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import ipaddress
import json
import logging
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from .jsontree import clone, to_json
from . import kinds, openapi, openapi_proto, tables, volumes
from .addresses import ServiceAddresses
from .api import Api, ApiError, bad_request, conflict, invalid, parse_body
from .authz import IDENTITY, Authorizer, Rule
from .controllers.manager import ControllerManager
from .controllers.objects import NAMESPACE, POD
from .eventttl import DEFAULT_EVENT_TTL
from .faults import Faults, Writes
from .ingress import IngressProxy
from .kinds import GROUP_VERSIONS, Kind, Obj
from .metrics import Metrics
from .nodes import ensure_node
from .patch import PatchError, json_patch
from .podexec import kill_running, serve_exec
from .podlogs import serve_log
from .quota import admit
from .selectors import selector_string
from .store import DEFAULT_HISTORY_SIZE, Change, Expired, Store, Watcher
from .usage import LEAK_DEFAULT_MIB_PER_SECOND

log = logging.getLogger("devcluster")

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.4-devcluster", "gitCommit": "devcluster",
           "gitTreeState": "clean", "buildDate": "2024-12-10T00:00:00Z", "goVersion": "go1.22.10",
           "compiler": "gc", "platform": "linux/amd64"}

PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json",
               "application/apply-patch+yaml")
JSON = "application/json"


def status_response(err: ApiError) -> web.Response:
    return web.Response(status=err.code, body=json.dumps(err.status()).encode(), content_type=JSON,
                        headers=err.headers)


def json_response(body: Any, status: int = 200, warnings: list[str] | None = None) -> web.Response:
    resp = web.Response(status=status, body=to_json(body), content_type=JSON)
    for warning in warnings or []:
        resp.headers.add("Warning", f"299 - {json.dumps(warning)}")
    return resp


def openapi_response(docs: openapi.OpenApi, request: web.Request, path: str) -> web.Response:
    """/openapi/v2 (JSON, or protobuf as client-go asks for it) and /openapi/v3 (JSON)."""
    if request.method not in ("GET", "HEAD"):
        raise _method_not_allowed()
    accept = request.headers.get("Accept", "") or "*/*"
    if path == "/openapi/v2":
        for media in (m.split(";")[0].strip() for m in accept.split(",")):
            if media in openapi_proto.ACCEPTED:
                return web.Response(body=docs.v2(protobuf=True), headers={"Content-Type": openapi_proto.MEDIA_TYPE,
                                                                         "Cache-Control": "no-cache, private"})
            if media in ("application/json", "*/*", "application/*"):
                return web.Response(body=docs.v2(), content_type=JSON, headers={"Cache-Control": "no-cache, private"})
        raise ApiError(406, "NotAcceptable", "only the following media types are accepted: application/json, "
                       f"{openapi_proto.MEDIA_TYPE}", {})
    if path == "/openapi/v3":
        return json_response(docs.v3_index())
    found = docs.v3(path[len("/openapi/v3/"):])
    if found is None:
        raise _page_not_found()
    body, digest = found
    cache = "public, immutable" if request.query.get("hash") == digest else "no-cache, private"
    return web.Response(body=body, content_type=JSON, headers={"Cache-Control": cache, "Etag": f'"{digest}"'})


def _query_bool(request: web.Request, key: str) -> bool:
    value = request.query.get(key)
    return value is not None and value.lower() not in ("0", "false", "")


# A state save waits at least this many times as long as the last one took (see `_schedule_save`).
SAVE_SPACING = 50
# Watch events written together when they are waiting at once (a storm, a backlog, a first list),
# and how long a watch waits for more once a change comes.
WATCH_BATCH = 200
WATCH_LINGER_SECONDS = 0.02


class Route:
    """A parsed resource path: /api/v1/namespaces/ns/pods/name/log and friends."""

    def __init__(self, kind: Kind, namespace: str | None, name: str | None, subresource: str, watch: bool):
        self.kind, self.namespace, self.name, self.subresource, self.watch = kind, namespace, name, subresource, watch


def parse_route(path: str) -> Route | None:
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        api_version, rest = "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        api_version, rest = f"{parts[1]}/{parts[2]}", parts[3:]
    else:
        return None
    if api_version not in GROUP_VERSIONS or not rest:
        return None
    watch = False
    if rest[0] == "watch":
        watch, rest = True, rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and kinds.find_kind(api_version, rest[2]) is not None:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    kind = kinds.find_kind(api_version, rest[0])
    if kind is None or len(rest) > 3:
        return None
    if namespace is not None and not kind.namespaced:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else ""
    if sub and sub not in kind.subresources:
        return None
    return Route(kind, namespace, name, sub, watch)


class DevServer:
    def __init__(self, *, token: str, data_dir: Path | None = None, pod_ready_seconds: float = 1.0,
                 bookmark_seconds: float = 60.0, history_size: int = DEFAULT_HISTORY_SIZE, backoff_base: float | None = None,
                 save_delay: float = 1.0, tls: bool = False, restricted_token: str | None = None,
                 restricted_rules: tuple[Rule, ...] = (), leak_mib_per_second: float = LEAK_DEFAULT_MIB_PER_SECOND,
                 ingress_port: int | None = None, metrics_api: bool = True, event_ttl: float = DEFAULT_EVENT_TTL):
        self.token = token
        # False: a cluster without metrics-server, where metrics.k8s.io is not there at all.
        self.metrics_api = metrics_api
        self.authz = Authorizer(token, restricted_token, restricted_rules)
        self.data_dir = data_dir
        self.store = Store(history_size)
        self.api = Api(self.store)
        # Storage admission first: the quota charges a claim in the class DefaultStorageClass gave it.
        self.api.admission.append(lambda kind, obj, old: volumes.admit(self.api, kind, obj, old))
        self.api.admission.append(lambda kind, obj, old: admit(self.store, kind, obj, old))
        self.addresses = ServiceAddresses(self.store)
        self.api.allocators.append(self._allocate_service)
        self.controllers = ControllerManager(self.api, pod_ready_seconds=pod_ready_seconds, backoff_base=backoff_base,
                                             leak_mib_per_second=leak_mib_per_second)
        self.controllers.event_ttl = event_ttl
        self.metrics = Metrics(self.api, self.controllers.kubelet, leak_mib_per_second=leak_mib_per_second)
        self.controllers.kubelet.on_pod_gone.append(self._remove_scratch)
        self.faults = Faults(drop=self._drop_threadsafe)
        self.writes = Writes()
        self.bookmark_seconds = bookmark_seconds
        self.save_delay = save_delay
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.AppRunner | None = None
        self.port = 0
        self.streams: set[web.StreamResponse] = set()
        self._save_handle: asyncio.TimerHandle | None = None
        self._last_save_seconds = 0.0
        self._scratch_root = Path(tempfile.mkdtemp(prefix="devcluster-pods-")) if data_dir is None \
            else data_dir / "pods"
        self.tls = tls
        self.openapi = openapi.OpenApi(VERSION)
        self._tls_dir = (data_dir or Path(tempfile.mkdtemp(prefix="devcluster-tls-"))) if tls else None
        # The PEM a kubeconfig must trust when serving TLS (None for plain http).
        self.ca_pem: bytes | None = None
        # The emulated ingress controller, on a port of its own when asked for (devcluster/ingress.py).
        self.ingress = IngressProxy(self) if ingress_port is not None else None
        self._ingress_port = ingress_port

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self, port: int = 0) -> int:
        self.loop = asyncio.get_running_loop()
        self._load()
        app = web.Application(middlewares=[self._log_mw, self._auth_mw, self._fault_mw], client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self.runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=0.5)
        await self.runner.setup()
        ssl_context = None
        if self._tls_dir is not None:
            from .tls import ensure_certificate, server_context

            cert, key = ensure_certificate(self._tls_dir)
            ssl_context = server_context(cert, key)
            self.ca_pem = cert.read_bytes()
        site = web.TCPSite(self.runner, "127.0.0.1", port, ssl_context=ssl_context)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        if self.store.get("namespaces", "", "default") is None:
            self.api.create(NAMESPACE, "", {"metadata": {"name": "default"}}, manager="kube-apiserver")
        # A cluster with no class at all gets kind's default one (also state saved before classes existed).
        if not self.store.list(volumes.STORAGE_CLASS.bucket):
            volumes.ensure_default_class(self.api)
        ensure_node(self.api, kinds.now_iso())
        # Like a fresh watch cache, history starts now: older resourceVersions are "too old".
        self.store.compacted_rv = self.store.rv
        self.controllers.start()
        # The schemas behind field validation and /openapi load off the loop, before the first write needs them.
        self.loop.run_in_executor(None, lambda: self.openapi.schemas)
        for pod in self.store.list("pods"):
            # Pods survive a restart like a rebooted node: their containers start again.
            self.controllers.kubelet.observe(_fake_added("pods", pod))
        self.store.on_dirty = self._schedule_save
        if self.ingress is not None:
            await self.ingress.start(self._ingress_port or 0)
        return self.port

    async def stop(self) -> None:
        if self.ingress is not None:
            await self.ingress.stop()
        self.store.drop_watchers()
        await self.controllers.stop()
        if self.runner is not None:
            await self.runner.cleanup()
        kill_running(self._scratch_root)
        if self._save_handle is not None:
            self._save_handle.cancel()
        self._save()
        if self.data_dir is None:
            shutil.rmtree(self._scratch_root, ignore_errors=True)
            if self._tls_dir is not None:
                shutil.rmtree(self._tls_dir, ignore_errors=True)

    def _load(self) -> None:
        if self.data_dir is None:
            return
        state = self.data_dir / "state.json"
        if state.exists():
            self.store.load(json.loads(state.read_bytes()))

    def _schedule_save(self) -> None:
        if self.data_dir is None or self._save_handle is not None or self.loop is None:
            return
        # A save writes the whole store on the event loop: with thousands of objects it takes a
        # while, so saves are spaced to keep them under a fiftieth of the loop's time (a crash
        # loses at most the last few seconds of a storm; a stop saves everything).
        delay = max(self.save_delay, SAVE_SPACING * self._last_save_seconds)
        self._save_handle = self.loop.call_later(delay, self._save)

    def _save(self) -> None:
        self._save_handle = None
        if self.data_dir is not None:
            started = time.monotonic()
            self.store.save(self.data_dir / "state.json")
            self._last_save_seconds = time.monotonic() - started

    # --- middlewares -----------------------------------------------------------------------------

    @web.middleware
    async def _log_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        start = time.monotonic()
        status = 500
        try:
            resp = await handler(request)
            status = resp.status
            return resp
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            if not request.path.startswith("/_devcluster/"):
                self.writes.record(request.method, request.path, status)
            log.info("%s %s %d %.1fms", request.method, request.path_qs, status, (time.monotonic() - start) * 1000)

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        identity = self.authz.authenticate(request.headers.get("Authorization", ""))
        if identity is None:
            return status_response(ApiError(401, "Unauthorized", "Unauthorized"))
        refusal = self.authz.refusal(identity, request)
        if refusal is not None:
            return status_response(refusal)
        request[IDENTITY] = identity
        return await handler(request)

    @web.middleware
    async def _fault_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/_devcluster/"):
            return await handler(request)
        effect = self.faults.effect(request.method, request.path)
        if effect.latency:
            await asyncio.sleep(effect.latency)
        if effect.conflict:
            route = parse_route(request.path)
            if route is not None and route.name:
                return status_response(_conflict_for(route))
            return status_response(ApiError(409, "Conflict", "Operation cannot be fulfilled: the object has been "
                                                              "modified; please apply your changes to the latest "
                                                              "version and try again"))
        if effect.status is not None:
            return status_response(_injected(effect.status, effect.retry_after, effect.message))
        return await handler(request)

    # --- dispatch --------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except ApiError as err:
            return status_response(err)
        except web.HTTPException:
            raise
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path)
            return status_response(ApiError(500, "InternalError", f"Internal error occurred: {exc}",
                                            {"causes": [{"message": str(exc)}]}))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        simple = {"/version": VERSION, "/healthz": None, "/readyz": None, "/livez": None, "/api": None,
                  "/apis": None, "/api/v1": None}
        if path == "/_devcluster/faults":
            return await self._faults_admin(request)
        if path == "/_devcluster/writes":
            if request.method not in ("GET", "DELETE"):
                raise _method_not_allowed()
            return json_response(self.writes.handle_admin(request.method))
        if path.startswith("/openapi/"):
            return openapi_response(self.openapi, request, path)
        if not self.metrics_api and path.startswith("/apis/metrics.k8s.io"):
            raise _page_not_found()
        if path in simple and request.method not in ("GET", "HEAD"):
            raise _method_not_allowed()
        if path == "/version":
            return json_response(VERSION)
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok", content_type="text/plain")
        if path == "/api":
            return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}]})
        if path == "/apis":
            return json_response(self._group_list())
        parts = [p for p in path.split("/") if p]
        if path == "/api/v1":
            return json_response(self._resource_list("v1"))
        if len(parts) == 2 and parts[0] == "apis":
            group = self._group(parts[1])
            if group is None:
                raise _page_not_found()
            return json_response(group)
        if len(parts) == 3 and parts[0] == "apis":
            if f"{parts[1]}/{parts[2]}" not in GROUP_VERSIONS:
                raise _page_not_found()
            return json_response(self._resource_list(f"{parts[1]}/{parts[2]}"))
        route = parse_route(path)
        if route is None:
            raise _page_not_found()
        return await self._resource(request, route)

    # --- discovery -------------------------------------------------------------------------------

    def _group_list(self) -> Obj:
        groups = []
        for gv in GROUP_VERSIONS:
            if gv == "v1" or (not self.metrics_api and gv.startswith("metrics.k8s.io/")):
                continue
            group = self._group(gv.split("/")[0])
            if group and group not in groups:
                groups.append(group)
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            {k: v for k, v in g.items() if k not in ("kind", "apiVersion")} for g in groups]}

    @staticmethod
    def _group(name: str) -> Obj | None:
        versions = [gv for gv in GROUP_VERSIONS if gv.startswith(name + "/")]
        if not versions:
            return None
        entries = [{"groupVersion": gv, "version": gv.split("/")[1]} for gv in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries,
                "preferredVersion": entries[0]}

    @staticmethod
    def _resource_list(gv: str) -> Obj:
        resources = []
        for k in GROUP_VERSIONS[gv]:
            entry: Obj = {"name": k.plural, "singularName": k.singular, "namespaced": k.namespaced, "kind": k.kind,
                          "verbs": list(k.verbs)}
            if k.short_names:
                entry["shortNames"] = list(k.short_names)
            if k.kind in ("Pod", "Service", "Deployment", "ReplicaSet", "Job"):
                entry["categories"] = ["all"]
            entry["storageVersionHash"] = _hash8(k.resource)
            resources.append(entry)
            for sub in k.subresources:
                sub_entry: Obj = {"name": f"{k.plural}/{sub}", "singularName": "", "namespaced": k.namespaced,
                                  "kind": k.kind, "verbs": ["get", "patch", "update"]}
                if sub == "scale":
                    sub_entry.update({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                elif sub == "log":
                    sub_entry.update({"kind": "Pod", "verbs": ["get"]})
                elif sub == "exec":
                    sub_entry.update({"kind": "PodExecOptions", "verbs": ["create", "get"]})
                elif sub == "finalize":
                    sub_entry["verbs"] = ["update"]
                resources.append(sub_entry)
        resources.sort(key=lambda r: r["name"])
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    # --- resources -------------------------------------------------------------------------------

    def _manager(self, request: web.Request) -> str:
        manager = request.query.get("fieldManager")
        if manager:
            if len(manager) > 128:
                raise invalid_options("fieldManager", manager, "must be 128 characters or less")
            return manager
        agent = request.headers.get("User-Agent", "")
        return agent.split("/", 1)[0][:128] or "unknown"

    async def _resource(self, request: web.Request, route: Route) -> web.StreamResponse:
        kind, method = route.kind, request.method
        namespace = route.namespace or ""
        if kind.group == "authorization.k8s.io":
            if route.name is not None or route.watch:
                raise _method_not_allowed()
            return await self.authz.serve(request, kind.kind, request[IDENTITY])
        if kind.group == "metrics.k8s.io":
            if route.watch:
                raise _method_not_allowed()
            return await self.metrics.serve(request, kind, route.namespace, route.name)
        if route.name is None:
            if method == "GET":
                if route.watch or _query_bool(request, "watch"):
                    return await self._watch(request, route)
                listed = self.api.list(
                    kind, route.namespace, label_selector=request.query.get("labelSelector"),
                    field_selector=request.query.get("fieldSelector"), limit=_int_param(request, "limit"),
                    continue_token=request.query.get("continue") or None)
                table_version = tables.accepted_table_version(request.headers.get("Accept", ""))
                if table_version:
                    return json_response(tables.list_table(kind, listed, table_version=table_version,
                                                           include=_include_object(request)))
                return json_response(listed)
            if method == "POST":
                if kind.namespaced and route.namespace is None:
                    raise _method_not_allowed()
                body = parse_body(await request.read(), request.content_type)
                warnings = self._check_fields(request, kind, body)
                obj = self.api.create(kind, namespace, body, manager=self._manager(request),
                                      dry_run=request.query.get("dryRun") == "All")
                return json_response(kinds.to_wire(kind, obj), 201, warnings=warnings)
            if method == "DELETE" and "deletecollection" in kind.verbs:
                return json_response(await self._delete_collection(request, route))
            raise _method_not_allowed()
        if route.watch:
            route.subresource = ""
            return await self._watch(request, route, single=route.name)
        if route.subresource == "log":
            return await self._log(request, route)
        if route.subresource == "exec":
            return await self._exec(request, route)
        if route.subresource == "scale":
            return await self._scale(request, route)
        if route.subresource == "finalize":
            if method != "PUT":
                raise _method_not_allowed()
            return await self._finalize(request, route)
        sub = route.subresource
        if method == "GET":
            if _query_bool(request, "watch"):
                return await self._watch(request, route, single=route.name)
            wire = kinds.to_wire(kind, self.api.get(kind, namespace, route.name))
            table_version = tables.accepted_table_version(request.headers.get("Accept", ""))
            if table_version and sub in ("", "status"):  # the status subresource prints as its kind does
                return json_response(tables.object_table(kind, wire, table_version=table_version,
                                                         include=_include_object(request)))
            return json_response(wire)
        if method == "PUT":
            body = parse_body(await request.read(), request.content_type)
            warnings = self._check_fields(request, kind, body)
            obj = self.api.update(kind, namespace, route.name, body, manager=self._manager(request), subresource=sub,
                                  dry_run=request.query.get("dryRun") == "All")
            return json_response(kinds.to_wire(kind, obj), warnings=warnings)
        if method == "PATCH":
            ctype = request.content_type
            if ctype not in PATCH_TYPES:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                               "accepted media types include: " + ", ".join(PATCH_TYPES))
            force = request.query.get("force")
            manager = request.query.get("fieldManager")
            if ctype == "application/apply-patch+yaml":
                if not manager:
                    raise invalid_options("fieldManager", None, None, required=True)
            elif force is not None:
                raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be '
                               "specified for non-apply patch", {"group": "meta.k8s.io", "kind": "PatchOptions",
                                                                 "causes": [{"reason": "FieldValueForbidden",
                                                                             "message": "Forbidden: may not be "
                                                                             "specified for non-apply patch",
                                                                             "field": "force"}]})
            raw, warnings = self._check_patch_fields(request, route, ctype, await request.read())
            obj, created = self.api.patch(kind, namespace, route.name, ctype, raw,
                                          manager=self._manager(request), force=_query_bool(request, "force"),
                                          subresource=sub, dry_run=request.query.get("dryRun") == "All")
            return json_response(kinds.to_wire(kind, obj), 201 if created else 200, warnings=warnings)
        if method == "DELETE" and not sub:
            options = await self._delete_options(request)
            body, _ = self.api.delete(kind, namespace, route.name, propagation=options.get("propagationPolicy"),
                                      grace_seconds=options.get("gracePeriodSeconds"),
                                      preconditions=options.get("preconditions"),
                                      dry_run=options.get("dryRun") == ["All"] or request.query.get("dryRun") == "All")
            return json_response(body)
        raise _method_not_allowed()

    # --- field validation (the fieldValidation parameter) ----------------------------------------

    def _check_fields(self, request: web.Request, kind: Kind, body: Any, *, patch: bool = False) -> list[str]:
        """Refuse (Strict) or drop with a warning (Warn, the default) the fields the kind's schema lacks."""
        directive = _field_validation(request)
        unknown = self.openapi.unknown_fields(kind, body)
        if not unknown:
            return []
        if directive == "Strict":
            detail = "strict decoding error: " + ", ".join(f'unknown field "{f}"' for f in unknown)
            if not patch:
                detail = f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {detail}'
            raise bad_request(detail)
        self.openapi.prune(kind, body)
        return [f'unknown field "{f}"' for f in unknown] if directive == "Warn" else []

    def _check_patch_fields(self, request: web.Request, route: Route, ctype: str,
                            raw: bytes) -> tuple[bytes, list[str]]:
        kind = route.kind
        if ctype == "application/apply-patch+yaml":
            body = parse_body(raw, ctype)
            unknown = self.openapi.unknown_fields(kind, body, keyed=True)
            if unknown:
                # Server-side apply builds a typed object first, whatever fieldValidation says.
                where = f"{route.namespace or ''}/{route.name}; {kind.group}/{kind.version}, Kind={kind.kind}"
                causes = [f"{f}: field not declared in schema" for f in unknown]
                detail = causes[0] if len(causes) == 1 else "errors:\n  " + "\n  ".join(causes)
                raise ApiError(500, "", f"failed to create typed patch object ({where}): {detail}")
            return raw, []
        body = parse_body(raw, JSON)
        if ctype == "application/json-patch+json":
            try:
                result = json_patch(kinds.to_wire(kind, self.api.get(kind, route.namespace or "", route.name or "")),
                                    body)
            except PatchError:
                return raw, []  # the patch itself is wrong: the API answers that
            return raw, self._check_fields(request, kind, clone(result), patch=True)
        warnings = self._check_fields(request, kind, body, patch=True)
        return (json.dumps(body).encode() if warnings or _field_validation(request) == "Ignore" else raw), warnings

    async def _delete_options(self, request: web.Request) -> Obj:
        options: Obj = {}
        raw = await request.read()
        if raw.strip():
            body = parse_body(raw, JSON)
            if isinstance(body, dict):
                options.update(body)
        if "propagationPolicy" in request.query:
            options["propagationPolicy"] = request.query["propagationPolicy"]
        if "gracePeriodSeconds" in request.query:
            options["gracePeriodSeconds"] = int(request.query["gracePeriodSeconds"])
        if options.get("orphanDependents") is True and "propagationPolicy" not in options:
            options["propagationPolicy"] = "Orphan"
        return options

    async def _delete_collection(self, request: web.Request, route: Route) -> Obj:
        options = await self._delete_options(request)
        listed = self.api.list(route.kind, route.namespace, label_selector=request.query.get("labelSelector"),
                               field_selector=request.query.get("fieldSelector"))
        deleted = []
        for item in listed["items"]:
            meta = item["metadata"]
            try:
                body, _ = self.api.delete(route.kind, meta.get("namespace", ""), meta["name"],
                                          propagation=options.get("propagationPolicy"),
                                          grace_seconds=options.get("gracePeriodSeconds"))
            except ApiError as err:
                if err.code == 404:
                    continue
                raise
            deleted.append(item)
        listed["items"] = deleted
        return listed

    async def _finalize(self, request: web.Request, route: Route) -> web.StreamResponse:
        body = parse_body(await request.read(), request.content_type)
        ns = self.api.get(route.kind, "", route.name or "")
        new = clone(ns)
        new["spec"]["finalizers"] = (body.get("spec") or {}).get("finalizers") or []
        stored = self.store.put("namespaces", new)
        return json_response(kinds.to_wire(route.kind, stored))

    # --- scale -----------------------------------------------------------------------------------

    def _scale_object(self, kind: Kind, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return {"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                             "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"]},
                "spec": {"replicas": obj["spec"].get("replicas", 1)},
                "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                           "selector": selector_string(obj["spec"].get("selector"))}}

    async def _scale(self, request: web.Request, route: Route) -> web.StreamResponse:
        from . import patch as patching

        kind, ns, name = route.kind, route.namespace or "", route.name or ""
        obj = self.api.get(kind, ns, name)
        scale = self._scale_object(kind, obj)
        if request.method == "GET":
            return json_response(scale)
        raw = await request.read()
        if request.method == "PUT":
            wanted = parse_body(raw, request.content_type)
        elif request.method == "PATCH":
            ctype = request.content_type
            body = parse_body(raw, "application/yaml" if "yaml" in ctype else JSON)
            if ctype == "application/json-patch+json":
                wanted = patching.json_patch(scale, body)
            elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json",
                           "application/apply-patch+yaml"):
                wanted = patching.merge_patch(scale, body)
            else:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format")
        else:
            raise _method_not_allowed()
        rv = (wanted.get("metadata") or {}).get("resourceVersion")
        if rv and rv != obj["metadata"]["resourceVersion"]:
            raise conflict(kind, name)
        replicas = (wanted.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or replicas < 0:
            raise ApiError(422, "Invalid", f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: '
                           f"{replicas}: must be greater than or equal to 0",
                           {"name": name, "group": "autoscaling", "kind": "Scale",
                            "causes": [{"reason": "FieldValueInvalid", "message": f"Invalid value: {replicas}: must "
                                        "be greater than or equal to 0", "field": "spec.replicas"}]})
        new = clone(obj)
        new["spec"]["replicas"] = replicas
        stored = self.api.write(kind, obj, new, manager=self._manager(request), subresource="scale")
        return json_response(self._scale_object(kind, stored))

    # --- watch -----------------------------------------------------------------------------------

    async def _watch(self, request: web.Request, route: Route, single: str | None = None) -> web.StreamResponse:
        kind = route.kind
        field_selector = request.query.get("fieldSelector")
        if single:
            field_selector = f"metadata.name={single}" + (f",{field_selector}" if field_selector else "")
        accepts = self.api.matcher(kind, request.query.get("labelSelector"), field_selector)
        namespace = route.namespace if kind.namespaced else None

        def in_scope(obj: Obj) -> bool:
            return namespace is None or obj["metadata"].get("namespace") == namespace

        rv_param = request.query.get("resourceVersion", "")
        timeout = _int_param(request, "timeoutSeconds")
        if not timeout:
            timeout = int(1800 * (1 + random.random()))
        bookmarks = _query_bool(request, "allowWatchBookmarks")
        initial = _query_bool(request, "sendInitialEvents")
        table_version = tables.accepted_table_version(request.headers.get("Accept", ""))
        present = tables.WatchTables(kind, table_version, _include_object(request)) if table_version else None
        watcher = Watcher(kind.bucket, accepts)
        self.store.add_watcher(watcher)
        resp = web.StreamResponse(status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"})
        resp.enable_chunked_encoding()
        self.streams.add(resp)
        try:
            await resp.prepare(request)
            deadline = time.monotonic() + timeout
            if rv_param in ("", "0") or initial:
                sent_rv = self.store.rv
                lines = []
                for obj in self.store.list(kind.bucket, namespace):
                    if accepts(obj):
                        lines.append(_event_line("ADDED", _presented(present, kinds.to_wire(kind, obj))))
                        if len(lines) >= WATCH_BATCH:
                            await self._write_lines(resp, lines)
                await self._write_lines(resp, lines)
                if initial and bookmarks:
                    await self._send(resp, "BOOKMARK", self._bookmark(kind, sent_rv, initial_end=True))
            else:
                try:
                    sent_rv = int(rv_param)
                except ValueError:
                    await self._send(resp, "ERROR", bad_request(f"invalid resource version: {rv_param}").status())
                    return resp
                try:
                    backlog = self.store.changes_since(kind.bucket, sent_rv)
                except Expired as exc:
                    await self._send(resp, "ERROR", ApiError(410, "Expired", str(exc)).status())
                    return resp
                lines: list[bytes] = []
                for change in backlog:
                    sent_rv = self._forward(lines, kind, change, accepts, in_scope, sent_rv, present)
                    if len(lines) >= WATCH_BATCH:
                        await self._write_lines(resp, lines)
                await self._write_lines(resp, lines)
            await self._pump(request, resp, kind, watcher, accepts, in_scope, sent_rv, deadline, bookmarks, present)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.store.remove_watcher(watcher)
            self.streams.discard(resp)
        return resp

    async def _pump(self, request: web.Request, resp: web.StreamResponse, kind: Kind, watcher: Watcher, accepts: Any, in_scope: Any,
                    sent_rv: int, deadline: float, bookmarks: bool, present: Any = None) -> None:
        # Like the watch cache: bookmarks every interval and one shortly before the watch times out.
        next_bookmark = time.monotonic() + self.bookmark_seconds
        final_bookmark = deadline - 2 if deadline - time.monotonic() > 3 else None
        while True:
            now = time.monotonic()
            if now >= deadline:
                return
            wake = min(deadline, next_bookmark if bookmarks else deadline,
                       final_bookmark if bookmarks and final_bookmark else deadline)
            try:
                change = await asyncio.wait_for(watcher.queue.get(), timeout=max(wake - now, 0.001))
            except asyncio.TimeoutError:
                now = time.monotonic()
                if bookmarks and (now >= next_bookmark or (final_bookmark and now >= final_bookmark)):
                    if final_bookmark and now >= final_bookmark:
                        final_bookmark = None
                    next_bookmark = now + self.bookmark_seconds
                    await self._send(resp, "BOOKMARK", self._bookmark(kind, self.store.rv))
                continue
            # The changes of the next few milliseconds go out with this one, in one write (and
            # one TLS record): in a storm a watch costs a write per batch rather than per change.
            if change is not None and watcher.queue.empty():
                await asyncio.sleep(WATCH_LINGER_SECONDS)
            lines: list[bytes] = []
            while change is not None:
                sent_rv = self._forward(lines, kind, change, accepts, in_scope, sent_rv, present)
                if len(lines) >= WATCH_BATCH or watcher.queue.empty():
                    break
                change = watcher.queue.get_nowait()
            await self._write_lines(resp, lines)
            if change is None:
                if watcher.abrupt and request.transport is not None:
                    # A reset mid-stream, as when a load balancer or the apiserver process dies.
                    request.transport.abort()
                return

    @staticmethod
    async def _write_lines(resp: web.StreamResponse, lines: list[bytes]) -> None:
        if lines:
            data = b"".join(lines)
            lines.clear()
            await resp.write(data)

    def _forward(self, lines: list[bytes], kind: Kind, change: Any, accepts: Any, in_scope: Any,
                 sent_rv: int, present: Any = None) -> int:
        """Appends the watch event `change` makes for this watch, if any, to `lines`; returns the
        resourceVersion the watch has now seen."""
        if change.rv <= sent_rv:
            return sent_rv
        obj, prev = change.obj, change.prev
        if not in_scope(obj):
            return change.rv
        now_match = accepts(obj)
        was_match = prev is not None and accepts(prev)
        event = None
        if change.type == "ADDED" and now_match:
            event = "ADDED"
        elif change.type == "MODIFIED":
            event = "MODIFIED" if now_match and was_match else "ADDED" if now_match else "DELETED" if was_match else None
        elif change.type == "DELETED" and now_match:
            event = "DELETED"
        if event:
            lines.append(_event_line(event, _presented(present, kinds.to_wire(kind, obj))))
        return change.rv

    @staticmethod
    def _bookmark(kind: Kind, rv: int, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(rv), "creationTimestamp": None}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"kind": kind.kind, "apiVersion": kind.api_version, "metadata": meta}

    @staticmethod
    async def _send(resp: web.StreamResponse, type_: str, obj: Obj) -> None:
        await resp.write(_event_line(type_, obj))

    def _drop_threadsafe(self, abrupt: bool) -> int:
        assert self.loop is not None
        if _in_loop(self.loop):
            return self._drop(abrupt)
        fut = asyncio.run_coroutine_threadsafe(self._drop_async(abrupt), self.loop)
        return fut.result(5)

    async def _drop_async(self, abrupt: bool) -> int:
        return self._drop(abrupt)

    def _drop(self, abrupt: bool) -> int:
        for w in self.store.watchers:
            w.abrupt = abrupt
        return self.store.drop_watchers()

    # --- logs and exec ---------------------------------------------------------------------------

    def _pick_container(self, pod: Obj, requested: str | None) -> str:
        name = pod["metadata"]["name"]
        containers = [c["name"] for c in pod["spec"].get("containers") or []]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if not requested:
            if len(containers) == 1:
                return containers[0]
            message = f"a container name must be specified for pod {name}, choose one of: [{' '.join(containers)}]"
            if inits:
                message += f" or one of the init containers: [{' '.join(inits)}]"
            raise bad_request(message)
        if requested not in containers + inits:
            raise bad_request(f"container {requested} is not valid for pod {name}")
        return requested

    async def _log(self, request: web.Request, route: Route) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise _method_not_allowed()
        ns, name = route.namespace or "", route.name or ""
        pod = self.api.get(POD, ns, name)
        container = self._pick_container(pod, request.query.get("container"))
        kubelet = self.controllers.kubelet
        runs = kubelet.runs_for(ns, name, container)
        if not runs:
            state = kubelet.container_state(ns, name, container)
            reason = "ContainerCreating"
            if state is not None and "waiting" in state.state:
                reason = state.state["waiting"].get("reason", reason)
            shown = {"ErrImagePull": "image can't be pulled",
                     "ImagePullBackOff": "trying and failing to pull image"}.get(reason, reason)
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: {shown}')
        uid = pod["metadata"]["uid"]

        def current_runs() -> list | None:
            live = self.store.get("pods", ns, name)
            if live is None or live["metadata"]["uid"] != uid:
                return None
            return kubelet.runs_for(ns, name, container)

        return await serve_log(request, current_runs)

    async def _exec(self, request: web.Request, route: Route) -> web.StreamResponse:
        if request.method not in ("GET", "POST"):
            raise _method_not_allowed()
        ns, name = route.namespace or "", route.name or ""
        pod = self.api.get(POD, ns, name)
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
        container = self._pick_container(pod, request.query.get("container"))
        if not pod["spec"].get("nodeName"):
            raise bad_request(f"pod {name} does not have a host assigned")
        state = self.controllers.kubelet.container_state(ns, name, container)
        if state is None or "running" not in state.state:
            raise bad_request(f'unable to upgrade connection: container not found ("{container}")')
        spec = next(c for c in pod["spec"]["containers"] if c["name"] == container)
        env = {e["name"]: e["value"] for e in spec.get("env") or [] if isinstance(e.get("value"), str)}
        workdir = self._scratch_root / pod["metadata"]["uid"]
        workdir.mkdir(parents=True, exist_ok=True)
        return await serve_exec(request, workdir=workdir, env=env)

    def _remove_scratch(self, uid: str) -> None:
        shutil.rmtree(self._scratch_root / uid, ignore_errors=True)

    # --- admin -----------------------------------------------------------------------------------

    async def _faults_admin(self, request: web.Request) -> web.StreamResponse:
        if request.method == "GET":
            return json_response({"rules": self.faults.rules()})
        if request.method == "DELETE":
            self.faults.clear()
            return json_response({"cleared": True})
        if request.method != "POST":
            raise _method_not_allowed()
        try:
            body = json.loads(await request.read() or b"{}")
            if not isinstance(body, dict):
                raise ValueError("body must be a JSON object")
            if body.get("action") == "drop_watches":
                return json_response({"dropped": self._drop(bool(body.get("abrupt", False)))})
            return json_response(self.faults.handle_admin(body))
        except (ValueError, TypeError, KeyError) as exc:
            raise bad_request(str(exc)) from None

    # --- services --------------------------------------------------------------------------------

    def _allocate_service(self, kind: Kind, obj: Obj, old: Obj | None) -> None:
        if kind.kind != "Service":
            return
        spec = obj["spec"]
        if spec.get("type") == "ExternalName":
            return
        if old is not None:
            # An update that leaves allocated values out keeps them, as the service REST does.
            ospec = old.get("spec") or {}
            if not spec.get("clusterIP") and ospec.get("clusterIP"):
                spec["clusterIP"], spec["clusterIPs"] = ospec["clusterIP"], ospec.get("clusterIPs",
                                                                                     [ospec["clusterIP"]])
            old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in ospec.get("ports") or []}
            if spec.get("type") in ("NodePort", "LoadBalancer"):
                for p in spec.get("ports") or []:
                    if not p.get("nodePort") and old_ports.get((p.get("port"), p.get("protocol", "TCP"))):
                        p["nodePort"] = old_ports[(p.get("port"), p.get("protocol", "TCP"))]
        if not spec.get("clusterIP"):
            network = ipaddress.ip_network("10.96.0.0/12")
            while True:
                candidate = str(network[random.randint(10, network.num_addresses - 2)])
                if not self.addresses.ip_taken(candidate):
                    break
            spec["clusterIP"] = candidate
        elif spec["clusterIP"] != "None" and old is None:
            if self.addresses.ip_taken(spec["clusterIP"]):
                raise invalid(kind, obj["metadata"]["name"], [kinds.invalid(
                    "spec.clusterIPs", [spec["clusterIP"]],
                    f"failed to allocate IP {spec['clusterIP']}: provided IP is already allocated")])
        spec["clusterIPs"] = spec.get("clusterIPs") or [spec["clusterIP"]]
        if spec.get("type") in ("NodePort", "LoadBalancer"):
            assigned: set[int] = set()
            for p in spec.get("ports") or []:
                if p.get("nodePort"):
                    if self.addresses.port_taken(p["nodePort"]) and old is None:
                        raise invalid(kind, obj["metadata"]["name"], [kinds.invalid(
                            "spec.ports[0].nodePort", p["nodePort"], "provided port is already allocated")])
                    continue
                while True:
                    candidate_port = random.randint(30000, 32767)
                    if not self.addresses.port_taken(candidate_port) and candidate_port not in assigned:
                        break
                p["nodePort"] = candidate_port
                assigned.add(candidate_port)
        else:
            for p in spec.get("ports") or []:
                p.pop("nodePort", None)


def invalid_options(field: str, value: Any, detail: str | None, *, required: bool = False) -> ApiError:
    message = "Required value: is required for apply patch" if required else \
        f"Invalid value: {kinds.go_repr(value)}: {detail}"
    reason = "FieldValueRequired" if required else "FieldValueInvalid"
    return ApiError(422, "Invalid", f'PatchOptions.meta.k8s.io "" is invalid: {field}: {message}',
                    {"group": "meta.k8s.io", "kind": "PatchOptions",
                     "causes": [{"reason": reason, "message": message, "field": field}]})


def _conflict_for(route: Route) -> ApiError:
    return conflict(route.kind, route.name or "")


def _injected(status: int, retry_after: int | None, message: str | None) -> ApiError:
    if status == 429:
        err = ApiError(429, "TooManyRequests", message or "Too many requests, please try again later.",
                       {"retryAfterSeconds": retry_after or 1})
        err.headers["Retry-After"] = str(retry_after or 1)
        return err
    reasons = {500: ("InternalError", "Internal error occurred: injected fault"),
               503: ("ServiceUnavailable", "The server is currently unable to handle the request"),
               504: ("Timeout", "Timeout: request did not complete within requested timeout - context deadline "
                                "exceeded"),
               403: ("Forbidden", "forbidden: injected fault"), 404: ("NotFound", "the server could not find the "
                                                                                  "requested resource"),
               409: ("Conflict", "Operation cannot be fulfilled: injected conflict"),
               401: ("Unauthorized", "Unauthorized")}
    reason, default_message = reasons.get(status, ("InternalError", f"injected fault ({status})"))
    err = ApiError(status, reason, message or default_message)
    if retry_after:
        err.headers["Retry-After"] = str(retry_after)
    return err


def _method_not_allowed() -> ApiError:
    return ApiError(405, "MethodNotAllowed", "the server does not allow this method on the requested resource",
                    {})


def _page_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def _int_param(request: web.Request, key: str) -> int:
    raw = request.query.get(key)
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise bad_request(f"invalid {key} parameter: {raw!r}") from None


def _field_validation(request: web.Request) -> str:
    # kube-apiserver's default since 1.27 is Warn: unknown fields are dropped with a warning.
    directive = request.query.get("fieldValidation") or "Warn"
    if directive not in ("Ignore", "Warn", "Strict"):
        raise bad_request(f'fieldValidation: Unsupported value: "{directive}": supported values: "Ignore", '
                          '"Strict", "Warn"')
    return directive


def _include_object(request: web.Request) -> str:
    include = request.query.get("includeObject") or "Metadata"
    if include not in ("None", "Metadata", "Object"):
        raise bad_request(f'includeObject: Unsupported value: "{include}": supported values: "Metadata", '
                          '"None", "Object"')
    return include


def _event_line(type_: str, obj: Obj) -> bytes:
    return to_json({"type": type_, "object": obj}) + b"\n"


def _presented(present: Any, wire: Obj) -> Obj:
    # A watch asked for tables sends each object as a one-row Table.
    return present(wire) if present is not None else wire


def _hash8(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest())[:11].decode()


def _in_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _fake_added(bucket: str, obj: Obj) -> Change:
    return Change(int(obj["metadata"]["resourceVersion"]), bucket, "ADDED", obj, None)

