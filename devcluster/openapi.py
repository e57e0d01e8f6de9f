"""OpenAPI v2 and v3 documents for the kinds the devcluster serves, and the field validation they drive.

Nothing here is written per kind. The schemas are the upstream Kubernetes definitions shipped by
the kubernetes-validate package (its `_definitions.json` is kube-apiserver's swagger with JSON
Schema spellings: nullable type lists, `$defs` references, int-or-string as `oneOf`); they are
turned back into OpenAPI shape, keeping the `x-kubernetes-*` extensions (group-version-kind,
list-map keys, patch strategy and merge key) that kubectl's validation, `explain` and
strategic merge read. Paths and operations are generated from `kinds.KINDS`.

kubectl learns that the server validates fields itself from the `fieldValidation` parameter of a
kind's PATCH operation in the v3 document; it then sends `fieldValidation=Strict` (its default) and
relies on the server to refuse unknown fields, so `unknown_fields` answers as kube-apiserver's
strict decoder does.
"""
from __future__ import annotations

import functools
import hashlib
import json
from importlib import resources
from typing import Any

from . import openapi_proto
from .kinds import KINDS, Kind, Obj

SCHEMA_PACKAGE = "kubernetes_validate"
_DEFS = "#/$defs/"
V2_REF, V3_REF = "#/definitions/", "#/components/schemas/"
META = "io.k8s.apimachinery.pkg.apis.meta.v1."
# Types kubernetes-validate rewrote as `oneOf` for JSON Schema; OpenAPI spells them as strings.
_SCALARS = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "description": "IntOrString is a type that can hold an int32 or a string.  When used in JSON or YAML "
                       "marshalling and unmarshalling, it produces or consumes the inner type.  This allows you to "
                       "have, for example, a JSON field that can accept a name or number.",
        "format": "int-or-string", "type": "string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "description": "Quantity is a fixed-point representation of a number. It provides convenient "
                       "marshaling/unmarshaling in JSON and YAML, in addition to String() and AsInt64() accessors.",
        "type": "string"},
}
# Subresources that have a document entry: their body kind and the operations they accept.
_SUBRESOURCE_VERBS = {"status": ("get", "put", "patch"), "scale": ("get", "put", "patch")}
SCALE_GVK = {"group": "autoscaling", "kind": "Scale", "version": "v1"}


@functools.lru_cache(maxsize=4)
def _upstream_definitions(minor: str) -> dict[str, Obj]:
    """kube-apiserver's definitions for 1.<minor> (the newest shipped one if that minor is missing)."""
    root = resources.files(SCHEMA_PACKAGE).joinpath("kubernetes-json-schema")
    names = sorted((p.name for p in root.iterdir() if p.name.endswith("-local")),
                   key=lambda n: tuple(int(x) for x in n[1:].split("-")[0].split(".")))
    wanted = f"v1.{minor}.0-local"
    chosen = wanted if wanted in names else names[-1]
    raw = json.loads(root.joinpath(chosen, "_definitions.json").read_text())["$defs"]
    return {name: _scalar_or_clean(name, schema) for name, schema in raw.items()}


def _scalar_or_clean(name: str, schema: Obj) -> Obj:
    if name in _SCALARS:
        return dict(_SCALARS[name])
    clean = _clean(schema)
    if "x-kubernetes-group-version-kind" in clean:
        # The package pins apiVersion and kind to one value for JSON Schema; upstream leaves them free.
        for key in ("apiVersion", "kind"):
            clean.get("properties", {}).get(key, {}).pop("enum", None)
    return clean


def _clean(node: Any) -> Any:
    if isinstance(node, list):
        return [_clean(n) for n in node]
    if not isinstance(node, dict):
        return node
    out: Obj = {}
    for key, value in node.items():
        if key == "type" and isinstance(value, list):
            kinds_ = [t for t in value if t != "null"]
            out[key] = kinds_[0] if len(kinds_) == 1 else kinds_
        elif key == "properties":
            out[key] = {name: _clean(prop) for name, prop in value.items()}
        else:
            out[key] = _clean(value)
    return out


def _retarget(node: Any, prefix: str) -> Any:
    """The same schema with `$ref`s pointing at `prefix` (v2 definitions or v3 components)."""
    if isinstance(node, list):
        return [_retarget(n, prefix) for n in node]
    if not isinstance(node, dict):
        return node
    return {k: (v.replace(_DEFS, prefix) if k == "$ref" else _retarget(v, prefix)) for k, v in node.items()}


def _refs(node: Any, found: set[str]) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str) and value.startswith(_DEFS):
                found.add(value[len(_DEFS):])
            else:
                _refs(value, found)
    elif isinstance(node, list):
        for value in node:
            _refs(value, found)


def _gvk(kind: Kind) -> Obj:
    return {"group": kind.group, "kind": kind.kind, "version": kind.version}


class Schemas:
    """The definitions of one Kubernetes minor version, indexed by group-version-kind."""

    def __init__(self, minor: str):
        self.definitions = _upstream_definitions(minor)
        self.by_gvk: dict[tuple[str, str, str], str] = {}
        for name, schema in self.definitions.items():
            for gvk in schema.get("x-kubernetes-group-version-kind") or []:
                self.by_gvk.setdefault((gvk.get("group", ""), gvk["version"], gvk["kind"]), name)

    def name_for(self, group: str, version: str, kind: str) -> str | None:
        return self.by_gvk.get((group, version, kind))

    def closure(self, roots: set[str]) -> dict[str, Obj]:
        seen: set[str] = set()
        todo = [r for r in roots if r in self.definitions]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            found: set[str] = set()
            _refs(self.definitions[name], found)
            todo.extend(f for f in found if f not in seen and f in self.definitions)
        return {name: self.definitions[name] for name in sorted(seen)}

    def resolve(self, schema: Obj) -> Obj:
        while "$ref" in schema:
            schema = self.definitions.get(schema["$ref"][len(_DEFS):], {})
        return schema


# --- documents ------------------------------------------------------------------------------------

def _param(name: str, where: str, description: str, type_: str = "string", *, required: bool = False) -> Obj:
    param: Obj = {"name": name, "in": where, "description": description, "type": type_, "uniqueItems": True}
    if required:
        param["required"] = True
    return param


_DRY_RUN = _param("dryRun", "query", "When present, indicates that modifications should not be persisted. An "
                  "invalid or unrecognized dryRun directive will result in an error response and no further "
                  "processing of the request. Valid values are: - All: all dry run stages will be processed")
_FIELD_MANAGER = _param("fieldManager", "query", "fieldManager is a name associated with the actor or entity that "
                        "is making these changes. The value must be less than or 128 characters long, and only "
                        "contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.")
_FIELD_VALIDATION = _param("fieldValidation", "query", "fieldValidation instructs the server on how to handle "
                           "objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid "
                           "values are: - Ignore: This will ignore any unknown fields that are silently dropped from "
                           "the object, and will ignore all but the last duplicate field that the decoder "
                           "encounters. - Warn: This will send a warning via the standard warning response header "
                           "for each unknown field that is dropped from the object, and for each duplicate field "
                           "that is encountered. The request will still succeed if there are no other errors, and "
                           "will only persist the last of any duplicate fields. This is the default in v1.23+ - "
                           "Strict: This will fail the request with a BadRequest error if any unknown fields would "
                           "be dropped from the object, or if any duplicate fields are present. The error returned "
                           "from the server will contain all unknown and duplicate fields encountered.")
_FORCE = _param("force", "query", "Force is going to \"force\" Apply requests. It means user will re-acquire "
                "conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
                "boolean")
_LIST_PARAMS = [
    _param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels. Defaults "
           "to everything."),
    _param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields. Defaults "
           "to everything."),
    _param("limit", "query", "limit is a maximum number of responses to return for a list call.", "integer"),
    _param("continue", "query", "The continue option should be set when retrieving more results from the server."),
    _param("resourceVersion", "query", "resourceVersion sets a constraint on what resource versions a request may "
           "be served from."),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", "integer"),
    _param("watch", "query", "Watch for changes to the described resources and return them as a stream of add, "
           "update, and remove notifications. Specify resourceVersion.", "boolean"),
    _param("allowWatchBookmarks", "query", "allowWatchBookmarks requests watch events with type \"BOOKMARK\".",
           "boolean"),
]
_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
                "application/strategic-merge-patch+json", "application/apply-patch+yaml")


def _operation_id(verb: str, kind: Kind, namespaced_path: bool, suffix: str = "") -> str:
    group = "".join(p.capitalize() for p in (kind.group.replace(".k8s.io", "").split(".") if kind.group else
                                             ["core"]))
    scope = "Namespaced" if namespaced_path else ""
    return f"{verb}{group}{kind.version.capitalize()}{scope}{kind.kind}{suffix}"


class _Operations:
    """The paths of one kind, as (path, method, operation) triples in a neutral shape."""

    def __init__(self, kind: Kind, body: str, list_body: str | None):
        self.kind, self.body, self.list_body = kind, body, list_body

    def prefix(self) -> str:
        return "/api/v1" if not self.kind.group else f"/apis/{self.kind.group}/{self.kind.version}"

    def items(self) -> list[tuple[str, list[Obj], dict[str, Obj]]]:
        kind, prefix = self.kind, self.prefix()
        gvk, verbs = _gvk(kind), set(kind.verbs)
        name_param = _param("name", "path", f"name of the {kind.kind}", required=True)
        ns_param = _param("namespace", "path", "object name and auth scope, such as for teams and projects",
                          required=True)
        scope = [ns_param] if kind.namespaced else []
        base = f"{prefix}/namespaces/{{namespace}}/{kind.plural}" if kind.namespaced else f"{prefix}/{kind.plural}"
        out: list[tuple[str, list[Obj], dict[str, Obj]]] = []
        collection: dict[str, Obj] = {}
        if "list" in verbs and self.list_body:
            collection["get"] = self._op("list", "list", f"list or watch objects of kind {kind.kind}",
                                         _LIST_PARAMS, None, self.list_body, gvk)
        if "create" in verbs:
            collection["post"] = self._op("create", "post", f"create a {kind.kind}",
                                          [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION], self.body, self.body, gvk)
        if "deletecollection" in verbs:
            collection["delete"] = self._op("deleteCollection", "deletecollection",
                                            f"delete collection of {kind.kind}", _LIST_PARAMS,
                                            META + "DeleteOptions", META + "Status", gvk)
        out.append((base, scope, collection))
        item: dict[str, Obj] = {}
        if "get" in verbs:
            item["get"] = self._op("read", "get", f"read the specified {kind.kind}", [], None, self.body, gvk)
        if "update" in verbs:
            item["put"] = self._op("replace", "put", f"replace the specified {kind.kind}",
                                   [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION], self.body, self.body, gvk)
        if "patch" in verbs:
            item["patch"] = self._op("patch", "patch", f"partially update the specified {kind.kind}",
                                     [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE], META + "Patch",
                                     self.body, gvk, patch=True)
        if "delete" in verbs:
            item["delete"] = self._op("delete", "delete", f"delete a {kind.kind}", [_DRY_RUN],
                                      META + "DeleteOptions", META + "Status", gvk)
        out.append((f"{base}/{{name}}", [name_param, *scope], item))
        for sub in kind.subresources:
            if sub not in _SUBRESOURCE_VERBS:
                continue
            body = "io.k8s.api.autoscaling.v1.Scale" if sub == "scale" else self.body
            sub_gvk = SCALE_GVK if sub == "scale" else gvk
            ops: dict[str, Obj] = {}
            suffix = sub.capitalize()
            ops["get"] = self._op("read", "get", f"read {sub} of the specified {kind.kind}", [], None, body,
                                  sub_gvk, suffix=suffix)
            ops["put"] = self._op("replace", "put", f"replace {sub} of the specified {kind.kind}",
                                  [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION], body, body, sub_gvk, suffix=suffix)
            ops["patch"] = self._op("patch", "patch", f"partially update {sub} of the specified {kind.kind}",
                                    [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION, _FORCE], META + "Patch", body,
                                    sub_gvk, patch=True, suffix=suffix)
            out.append((f"{base}/{{name}}/{sub}", [name_param, *scope], ops))
        if kind.namespaced and "list" in verbs and self.list_body:
            every = self._op("list", "list", f"list or watch objects of kind {kind.kind}", _LIST_PARAMS, None,
                             self.list_body, gvk, namespaced=False, suffix="ForAllNamespaces")
            out.append((f"{prefix}/{kind.plural}", [], {"get": every}))
        return out

    def _op(self, verb: str, action: str, description: str, params: list[Obj], request: str | None,
            response: str, gvk: Obj, *, patch: bool = False, namespaced: bool | None = None,
            suffix: str = "") -> Obj:
        scoped = self.kind.namespaced if namespaced is None else namespaced
        return {"description": description, "operationId": _operation_id(verb, self.kind, scoped, suffix),
                "parameters": params, "request": request, "response": response, "patch": patch,
                "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}


def _v2_operation(op: Obj) -> Obj:
    params = list(op["parameters"])
    if op["request"]:
        params = [{"name": "body", "in": "body", "required": True,
                   "schema": {"$ref": V2_REF + op["request"]}}, *params]
    out = {"description": op["description"], "operationId": op["operationId"], "parameters": params,
           "consumes": list(_PATCH_TYPES) if op["patch"] else ["*/*"],
           "produces": ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
           "responses": {"200": {"description": "OK", "schema": {"$ref": V2_REF + op["response"]}},
                         "401": {"description": "Unauthorized"}},
           "schemes": ["https"],
           "x-kubernetes-action": op["x-kubernetes-action"],
           "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"]}
    return out


def _v3_param(param: Obj) -> Obj:
    out = {k: v for k, v in param.items() if k not in ("type", "uniqueItems")}
    out["schema"] = {"type": param["type"], "uniqueItems": True}
    return out


def _v3_operation(op: Obj) -> Obj:
    media = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
    response = {"$ref": V3_REF + op["response"]}
    out: Obj = {"description": op["description"], "operationId": op["operationId"],
                "parameters": [_v3_param(p) for p in op["parameters"]],
                "responses": {"200": {"description": "OK", "content": {m: {"schema": response} for m in media}},
                              "401": {"description": "Unauthorized"}},
                "x-kubernetes-action": op["x-kubernetes-action"],
                "x-kubernetes-group-version-kind": op["x-kubernetes-group-version-kind"]}
    if op["request"]:
        types = _PATCH_TYPES if op["patch"] else ("*/*",)
        out["requestBody"] = {"content": {t: {"schema": {"$ref": V3_REF + op["request"]}} for t in types},
                              "required": True}
    return out


class OpenApi:
    """The documents for `kinds` (built once, on first use, then served from memory)."""

    def __init__(self, version: Obj, kinds: list[Kind] | None = None):
        self.version = version
        self.kinds = list(KINDS if kinds is None else kinds)
        self._v2: dict[str, bytes] = {}
        self._v3: dict[str, bytes] | None = None

    @functools.cached_property
    def schemas(self) -> Schemas:
        # Loaded on the first write or document request (a quarter of a second), not at startup:
        # tests start many devclusters that never need it.
        return Schemas(str(self.version.get("minor", "31")).rstrip("+"))

    def body_name(self, kind: Kind) -> str | None:
        return self.schemas.name_for(kind.group, kind.version, kind.kind)

    def _operations(self, kinds: list[Kind]) -> list[_Operations]:
        out = []
        for kind in kinds:
            body = self.body_name(kind)
            if body is None:
                # A kind with no upstream definition (an aggregated API) has no document here.
                continue
            out.append(_Operations(kind, body, self.schemas.name_for(kind.group, kind.version, kind.kind + "List")))
        return out

    @staticmethod
    def _roots(ops: list[_Operations]) -> set[str]:
        roots = {META + "Status", META + "DeleteOptions", META + "Patch", META + "WatchEvent"}
        for op in ops:
            roots.add(op.body)
            if op.list_body:
                roots.add(op.list_body)
            if "scale" in op.kind.subresources:
                roots.add("io.k8s.api.autoscaling.v1.Scale")
        return roots

    def v2(self, *, protobuf: bool = False) -> bytes:
        """The swagger 2.0 document, as JSON or in gnostic's protobuf encoding."""
        if not self._v2:
            ops = self._operations(self.kinds)
            paths: Obj = {}
            for op in ops:
                for path, params, methods in op.items():
                    entry = paths.setdefault(path, {})
                    entry.update({m: _v2_operation(o) for m, o in methods.items()})
                    entry["parameters"] = params
            definitions = {name: _retarget(s, V2_REF) for name, s in self.schemas.closure(self._roots(ops)).items()}
            doc = {"swagger": "2.0", "info": {"title": "Kubernetes", "version": self.version["gitVersion"]},
                   "paths": dict(sorted(paths.items())), "definitions": definitions,
                   "securityDefinitions": {"BearerToken": {"description": "Bearer Token authentication",
                                                           "in": "header", "name": "authorization",
                                                           "type": "apiKey"}},
                   "security": [{"BearerToken": []}]}
            self._v2 = {"json": json.dumps(doc).encode(), "protobuf": openapi_proto.document(doc)}
        return self._v2["protobuf" if protobuf else "json"]

    def _v3_docs(self) -> dict[str, bytes]:
        if self._v3 is None:
            by_gv: dict[str, list[Kind]] = {}
            for kind in self.kinds:
                by_gv.setdefault("api/v1" if not kind.group else f"apis/{kind.group}/{kind.version}", []).append(kind)
            docs: dict[str, bytes] = {}
            for gv_path, gv_kinds in by_gv.items():
                ops = self._operations(gv_kinds)
                if not ops:
                    continue
                paths: Obj = {}
                for op in ops:
                    for path, params, methods in op.items():
                        entry = paths.setdefault(path, {})
                        entry.update({m: _v3_operation(o) for m, o in methods.items()})
                        entry["parameters"] = [_v3_param(p) for p in params]
                schemas = {name: _retarget(s, V3_REF) for name, s in self.schemas.closure(self._roots(ops)).items()}
                doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": self.version["gitVersion"]},
                       "paths": dict(sorted(paths.items())),
                       "components": {"schemas": schemas, "securitySchemes": {"BearerToken": {
                           "description": "Bearer Token authentication", "in": "header", "name": "authorization",
                           "type": "apiKey"}}},
                       "security": [{"BearerToken": []}]}
                docs[gv_path] = json.dumps(doc).encode()
            self._v3 = docs
        return self._v3

    def v3_index(self) -> Obj:
        return {"paths": {gv: {"serverRelativeURL": f"/openapi/v3/{gv}?hash={_hash(body)}"}
                          for gv, body in sorted(self._v3_docs().items())}}

    def v3(self, gv_path: str) -> tuple[bytes, str] | None:
        body = self._v3_docs().get(gv_path)
        return None if body is None else (body, _hash(body))

    # --- field validation ---------------------------------------------------------------------

    def unknown_fields(self, kind: Kind, obj: Any, *, keyed: bool = False) -> list[str]:
        """Paths of fields the kind's schema does not declare, spelled as kube-apiserver reports them:
        `spec.foo`, `spec.containers[0].bar` (strict decoding) or, with `keyed`, as server-side apply's
        `.spec.containers[name="app"].bar`."""
        name = self.body_name(kind)
        if name is None or not isinstance(obj, dict) or self._declared(self.schemas.definitions[name], obj):
            return []
        found: list[str] = []
        self._walk(self.schemas.definitions[name], obj, "", found, keyed)
        return found

    def prune(self, kind: Kind, obj: Any) -> None:
        """Drop the fields the schema does not declare, as decoding into the Go types does."""
        name = self.body_name(kind)
        if name is not None and isinstance(obj, dict) and not self._declared(self.schemas.definitions[name], obj):
            self._walk(self.schemas.definitions[name], obj, "", [], False, prune=True)

    def _declared(self, schema: Obj, value: Any) -> bool:
        """Whether every field of `value` is one its schema declares: what `_walk` would find
        nothing in, without spelling a path for each field (nearly every body is like that)."""
        if isinstance(value, dict):
            schema = self.schemas.resolve(schema)
            props = schema.get("properties")
            if props is not None:
                for key, item in value.items():
                    if key.startswith("$"):
                        continue
                    sub = props.get(key)
                    if sub is None or not self._declared(sub, item):
                        return False
                return True
            extra = schema.get("additionalProperties")
            return not isinstance(extra, dict) or all(self._declared(extra, item) for item in value.values())
        if isinstance(value, list):
            items = self.schemas.resolve(schema).get("items")
            return not isinstance(items, dict) or all(self._declared(items, item) for item in value)
        return True

    def _walk(self, schema: Obj, value: Any, path: str, found: list[str], keyed: bool, prune: bool = False) -> None:
        schema = self.schemas.resolve(schema)
        if isinstance(value, dict):
            props = schema.get("properties")
            if props is not None:
                for key in list(value):
                    if key.startswith("$"):
                        continue  # strategic merge patch directives ($patch, $setElementOrder/..., $retainKeys)
                    child = f"{path}.{key}" if path or keyed else key
                    if key not in props:
                        found.append(child)
                        if prune:
                            del value[key]
                        continue
                    self._walk(props[key], value[key], child, found, keyed, prune)
            elif isinstance(schema.get("additionalProperties"), dict):
                for key, item in value.items():
                    self._walk(schema["additionalProperties"], item, f"{path}.{key}", found, keyed, prune)
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            map_keys = schema.get("x-kubernetes-list-map-keys") if keyed else None
            for index, item in enumerate(value):
                if map_keys and isinstance(item, dict):
                    label = ",".join(f"{k}={json.dumps(item.get(k))}" for k in map_keys)
                else:
                    label = str(index)
                self._walk(schema["items"], item, f"{path}[{label}]", found, keyed, prune)


def _hash(body: bytes) -> str:
    return hashlib.sha512(body).hexdigest().upper()
