"""The verbs of the API (create, get, list, update, patch, delete) shared by HTTP handlers and controllers.

Every write goes through here so that defaulting, validation, admission, resourceVersion,
generation and managedFields behave the same whoever the writer is.
"""
from __future__ import annotations

import json
import uuid
from bisect import bisect_right
from collections import OrderedDict
from typing import Any, Callable

import yaml

from .jsontree import clone
from . import kinds, patch
from .kinds import Kind, Obj
from .selectors import SelectorError, label_matcher, parse_field_selector
from .store import Expired, Key, Store, decode_continue, encode_continue, object_key


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details
        self.headers = headers or {}

    def status(self) -> Obj:
        out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": self.message, "reason": self.reason}
        if self.details is not None:
            out["details"] = self.details
        out["code"] = self.code
        return out


def not_found(kind: Kind, name: str) -> ApiError:
    details = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return ApiError(404, "NotFound", f'{kind.resource} "{name}" not found', _ordered(details))


def namespace_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'namespaces "{name}" not found', {"name": name, "kind": "namespaces"})


def already_exists(kind: Kind, name: str) -> ApiError:
    details = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return ApiError(409, "AlreadyExists", f'{kind.resource} "{name}" already exists', _ordered(details))


def conflict(kind: Kind, name: str, why: str = "the object has been modified; please apply your changes to the "
                                               "latest version and try again") -> ApiError:
    details = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    return ApiError(409, "Conflict", f'Operation cannot be fulfilled on {kind.resource} "{name}": {why}',
                    _ordered(details))


def invalid(kind: Kind, name: str, causes: list[kinds.Cause]) -> ApiError:
    details: Obj = {"name": name, "kind": kind.kind}
    if kind.group:
        details["group"] = kind.group
    details = _ordered(details)
    details["causes"] = [c.as_dict() for c in causes]
    parts = [f"{c.field}: {c.message}" for c in causes]
    summary = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, "Invalid", f'{kind.qualified_kind} "{name}" is invalid: {summary}', details)


def forbidden(kind: Kind, name: str, why: str) -> ApiError:
    details = {"name": name, "kind": kind.plural}
    if kind.group:
        details["group"] = kind.group
    target = f'{kind.resource} "{name}"' if name else kind.resource
    return ApiError(403, "Forbidden", f"{target} is forbidden: {why}", _ordered(details))


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def _ordered(details: Obj) -> Obj:
    return {k: details[k] for k in ("name", "group", "kind") if k in details}


GENERATION_KINDS = {"Deployment", "ReplicaSet", "Job", "NetworkPolicy", "Ingress"}
# Kinds whose DELETE answers with the deleted object rather than a Status (ReturnDeletedObject).
RETURNS_DELETED = {"Pod", "Service", "ResourceQuota", "PersistentVolumeClaim", "StorageClass"}


def default_propagation(kind: Kind) -> str:
    # batch/v1 Jobs orphan their pods unless asked otherwise; kubectl hides that, the API does not.
    return "Orphan" if kind.kind == "Job" else "Background"


def parse_body(raw: bytes, content_type: str) -> Any:
    if "protobuf" in content_type or "cbor" in content_type:
        # Only JSON and YAML bodies are read here (kubectl 1.33's typed `create` commands send protobuf;
        # its `apply` sends JSON): the 415 names what is accepted instead of a JSON decoding error.
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                       "media types include: application/json, application/yaml")
    if not raw.strip():
        raise bad_request("the body of the request was empty")
    try:
        if "yaml" in content_type:
            # Clients send server-side apply bodies as JSON under the YAML type: JSON is YAML,
            # and json reads it many times faster than a YAML parser.
            try:
                return json.loads(raw)
            except ValueError:
                return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        what = "yaml" if "yaml" in content_type else "json"
        raise bad_request(f"error decoding {what}: {exc}") from None


Admission = Callable[[Kind, Obj, "Obj | None"], None]


# Lists being paged through whose order is kept (a watcher's first lists, kubectl's chunks).
LISTS_KEPT = 8


def _key_of(start: str, namespaced: bool) -> Key:
    """The store key of the object a continue token names ("namespace/name", or a name)."""
    if namespaced and "/" in start:
        namespace, name = start.split("/", 1)
        return namespace, name
    return "", start


class Api:
    def __init__(self, store: Store):
        self.store = store
        # Admission plugins run after defaulting and validation: (kind, new, old) -> raise ApiError.
        self.admission: list[Admission] = []
        self.allocators: list[Callable[[Kind, Obj, "Obj | None"], None]] = []
        # (bucket, resourceVersion, namespace) -> the keys and objects of that list, in order: the
        # pages after the first read the list they continue instead of rebuilding and sorting
        # the whole bucket each (63,000 events: a fifth of a second a page). A list at a version
        # never changes, so a cached one stays right until its version is compacted away.
        self._lists: OrderedDict[tuple[str, int, str | None], tuple[list[Key], list[Obj]]] = OrderedDict()

    # --- reads -----------------------------------------------------------------------------------

    def get(self, kind: Kind, namespace: str, name: str) -> Obj:
        obj = self.store.get(kind.bucket, namespace if kind.namespaced else "", name)
        if obj is None:
            raise not_found(kind, name)
        return obj

    def find(self, kind: Kind, namespace: str, name: str) -> Obj | None:
        return self.store.get(kind.bucket, namespace if kind.namespaced else "", name)

    def matcher(self, kind: Kind, label_selector: str | None, field_selector: str | None) -> Callable[[Obj], bool]:
        try:
            labels_ok = label_matcher(label_selector)
        except SelectorError as exc:
            raise bad_request(f"unable to parse requirement: {exc}" if "unable" not in str(exc) else str(exc)) from None
        try:
            fields = parse_field_selector(field_selector)
        except SelectorError as exc:
            raise bad_request(str(exc)) from None
        for req in fields:
            if kinds.field_value(kind, {}, req.field) is None:
                raise bad_request(f'field label not supported: {req.field}')

        def accepts(obj: Obj) -> bool:
            if not labels_ok((obj.get("metadata") or {}).get("labels") or {}):
                return False
            for req in fields:
                value = kinds.field_value(kind, obj, req.field)
                if (value == req.value) != (req.op == "="):
                    return False
            return True

        return accepts

    def list(self, kind: Kind, namespace: str | None, *, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 0, continue_token: str | None = None) -> Obj:
        accepts = self.matcher(kind, label_selector, field_selector)
        ns = namespace if kind.namespaced else None
        list_rv = self.store.rv
        if continue_token:
            try:
                list_rv, start = decode_continue(continue_token)
            except (ValueError, KeyError, TypeError):
                raise bad_request("continue key is not valid: illegal base64 data at input byte 0") from None
            try:
                keys, objs = self._listed(kind.bucket, list_rv, ns)
            except Expired:
                raise ApiError(410, "Expired", "The provided continue parameter is too old to display a consistent "
                               "list result. You can start a new list without the continue parameter, or use the "
                               "continue token in this response to retrieve the remainder of the results. Continuing "
                               "with the provided token results in an inconsistent list - objects that were created, "
                               "modified, or deleted between the time the first chunk was returned and now may show "
                               "up in the list.") from None
            # The first page ordered its objects by (namespace, name): the next starts after its last.
            candidates = objs[bisect_right(keys, _key_of(start, kind.namespaced)):]
        else:
            candidates = self.store.list(kind.bucket, ns)
        items, meta = [], {"resourceVersion": str(list_rv)}
        remaining = 0
        selected = bool(label_selector or field_selector)
        for position, obj in enumerate(candidates):
            if not accepts(obj):
                continue
            if limit and len(items) >= limit:
                # Without a selector the rest is counted, not read; with one, one more is enough.
                remaining = len(candidates) - position if not selected else 1
                break
            items.append(obj)
        if remaining:
            meta["continue"] = encode_continue(list_rv, object_key(items[-1]))
            if not selected:
                meta["remainingItemCount"] = remaining
        return {"kind": f"{kind.kind}List", "apiVersion": kind.api_version, "metadata": meta,
                "items": [kinds.to_wire(kind, o, in_list=True) for o in items]}

    def _listed(self, bucket: str, rv: int, namespace: str | None) -> tuple[list[Key], list[Obj]]:
        """The keys and objects of `bucket` (in `namespace`, or all) as they were at `rv`, in key
        order; `Expired` once `rv` is older than what the store can rebuild."""
        if rv < self.store.oldest_rv(bucket):
            raise Expired(rv, self.store.oldest_rv(bucket))
        cache_key = (bucket, rv, namespace)
        listed = self._lists.get(cache_key)
        if listed is None:
            snap = self.store.snapshot(bucket, rv)
            keys = sorted(k for k in snap if namespace is None or k[0] == namespace)
            listed = self._lists[cache_key] = (keys, [snap[k] for k in keys])
            if len(self._lists) > LISTS_KEPT:
                self._lists.popitem(last=False)
        else:
            self._lists.move_to_end(cache_key)
        return listed

    # --- create ----------------------------------------------------------------------------------

    def check_namespace(self, kind: Kind, namespace: str, name: str) -> None:
        if not kind.namespaced:
            return
        ns = self.store.get("namespaces", "", namespace)
        if ns is None:
            raise namespace_not_found(namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise forbidden(kind, name, f"unable to create new content in namespace {namespace} because it is "
                                        "being terminated")

    def create(self, kind: Kind, namespace: str, body: Any, *, manager: str, dry_run: bool = False,
               apply_config: Obj | None = None, force: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized (must be of type object)")
        obj = kinds.from_wire(kind, clone(body))
        self._check_type(kind, obj)
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if kind.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the "
                                  "request")
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + kinds.random_suffix()
        name = meta.get("name") or ""
        self.check_namespace(kind, namespace, name)
        for drop in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                     "generation", "selfLink", "managedFields"):
            meta.pop(drop, None)
        if kind.has_status and kind.kind != "Namespace":
            obj.pop("status", None)
        kinds.default(kind, obj)
        causes = kinds.validate(kind, obj)
        if causes:
            raise invalid(kind, name, causes)
        if self.find(kind, namespace, name) is not None:
            raise already_exists(kind, name)
        for plugin in self.admission:
            plugin(kind, obj, None)
        for allocate in self.allocators:
            allocate(kind, obj, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = kinds.now_iso()
        if kind.kind == "Job":
            _generate_job_selector(obj)
        if kind.kind in GENERATION_KINDS:
            meta["generation"] = 1
        now = kinds.now_iso()
        reset = {"status"} if kind.has_status and kind.kind != "Namespace" else set()
        if apply_config is not None:
            merged = patch.apply(None, apply_config, manager=manager, api_version=kind.api_version, force=force,
                                 now=now, reset=reset)
            obj["metadata"]["managedFields"] = merged["metadata"].get("managedFields", [])
        else:
            patch.record_update(None, obj, manager=manager, api_version=kind.api_version, now=now, reset=reset)
        obj = _canonical(kind, obj)
        if dry_run:
            return obj
        return self.store.put(kind.bucket, obj)

    def _check_type(self, kind: Kind, obj: Obj) -> None:
        body_kind, body_version = obj.get("kind"), obj.get("apiVersion")
        # Events arrive in either API's shape and are stored in the core/v1 one.
        if kind.bucket != "events" and body_version and body_version != kind.api_version:
            raise bad_request(f"the API version in the data ({body_version}) does not match the expected API version "
                              f"({kind.api_version})")
        if body_kind and body_kind != kind.kind:
            raise bad_request(f"the kind in the data ({body_kind}) does not match the expected kind ({kind.kind})")
        obj["kind"], obj["apiVersion"] = (kind.kind, kind.api_version) if kind.bucket != "events" else ("Event", "v1")
        if kind.bucket == "events":
            _check_event_times(kind, obj)

    # --- update ----------------------------------------------------------------------------------

    def update(self, kind: Kind, namespace: str, name: str, body: Any, *, manager: str, subresource: str = "",
               dry_run: bool = False) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the object provided is unrecognized (must be of type object)")
        new = kinds.from_wire(kind, clone(body))
        self._check_type(kind, new)
        meta = new.setdefault("metadata", {})
        if meta.get("name") and meta["name"] != name:
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name on the URL ({name})")
        if kind.namespaced and meta.get("namespace") and meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        old = self.get(kind, namespace, name)
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(kind, name)
        return self.write(kind, old, new, manager=manager, subresource=subresource, dry_run=dry_run)

    def write(self, kind: Kind, old: Obj, new: Obj, *, manager: str, subresource: str = "", dry_run: bool = False,
              applied: bool = False, trusted: bool = False) -> Obj:
        """Store `new` as the next version of `old` (the common tail of update, patch and apply)."""
        name = old["metadata"]["name"]
        new = self._merge_subresource(kind, old, new, subresource)
        meta = new.setdefault("metadata", {})
        for keep in ("uid", "creationTimestamp", "name", "namespace", "deletionTimestamp",
                     "deletionGracePeriodSeconds", "generation"):
            if keep in old["metadata"]:
                meta[keep] = old["metadata"][keep]
            else:
                meta.pop(keep, None)
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if kind.kind == "Namespace":
            (meta.setdefault("labels", {}))["kubernetes.io/metadata.name"] = name
        kinds.default(kind, new)
        # Controllers (trusted) may set what users may not, such as a pod's nodeName through binding.
        if not trusted:
            causes = kinds.validate(kind, new) + self._immutable(kind, old, new)
            if causes:
                raise invalid(kind, name, causes)
            for plugin in self.admission:
                plugin(kind, new, old)
        for allocate in self.allocators:
            allocate(kind, new, old)
        if subresource == "binding":
            subresource = ""
        # Scaling goes through the main object's strategy, so it counts as a spec change.
        if kind.kind in GENERATION_KINDS and subresource in ("", "scale"):
            spec_changed = old.get("spec") != new.get("spec")
            if kind.kind == "Deployment":
                spec_changed |= old["metadata"].get("annotations") != meta.get("annotations")
            if spec_changed:
                meta["generation"] = old["metadata"].get("generation", 1) + 1
        if not applied:
            reset = self._reset_fields(kind, subresource)
            patch.record_update(old, new, manager=manager, api_version=kind.api_version, now=kinds.now_iso(),
                                reset=reset, subresource=subresource)
        new = _canonical(kind, new)
        if _same(old, new):
            return old
        if dry_run:
            return new
        if meta.get("deletionTimestamp") and not meta.get("finalizers"):
            self.store.put(kind.bucket, new)
            return self.store.delete(kind.bucket, meta.get("namespace", ""), name) or new
        return self.store.put(kind.bucket, new)

    @staticmethod
    def _reset_fields(kind: Kind, subresource: str) -> set[str]:
        if subresource == "status":
            return {"spec"}
        if subresource == "binding":
            return {"status"}
        if kind.has_status and kind.kind != "Namespace":
            return {"status"}
        return set()

    @staticmethod
    def _merge_subresource(kind: Kind, old: Obj, new: Obj, subresource: str) -> Obj:
        if subresource == "status":
            out = clone(old)
            out["status"] = new.get("status", {})
            # Status writers may change annotations (the deployment controller's revision does).
            annotations = (new.get("metadata") or {}).get("annotations")
            if annotations is not None:
                out["metadata"]["annotations"] = clone(annotations)
            out["metadata"]["managedFields"] = new.get("metadata", {}).get("managedFields",
                                                                           old["metadata"].get("managedFields"))
            if out["metadata"]["managedFields"] is None:
                out["metadata"].pop("managedFields")
            return out
        if kind.has_status and kind.kind != "Namespace":
            new = dict(new)
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        if kind.kind == "Namespace":
            new = dict(new)
            new["status"] = clone(old.get("status"))
        return new

    @staticmethod
    def _immutable(kind: Kind, old: Obj, new: Obj) -> list[kinds.Cause]:
        causes = []

        def same(path: str) -> bool:
            return kinds.dig(old, path) == kinds.dig(new, path)

        if kind.kind in ("Deployment", "ReplicaSet") and not same("spec.selector"):
            causes.append(kinds.invalid("spec.selector", kinds.dig(new, "spec.selector"), "field is immutable"))
        if kind.kind == "Job":
            if not same("spec.selector"):
                causes.append(kinds.invalid("spec.selector", kinds.dig(new, "spec.selector"), "field is immutable"))
            if not same("spec.template"):
                causes.append(kinds.invalid("spec.template", kinds.dig(new, "spec.template"), "field is immutable"))
            if not same("spec.completions"):
                causes.append(kinds.invalid("spec.completions", kinds.dig(new, "spec.completions"), "field is immutable"))
        if kind.kind == "Service" and kinds.dig(old, "spec.clusterIP") and kinds.dig(new, "spec.clusterIP") and \
                not same("spec.clusterIP") and kinds.dig(new, "spec.type") != "ExternalName":
            causes.append(kinds.invalid("spec.clusterIPs[0]", kinds.dig(new, "spec.clusterIP"),
                                        "may not change once set"))
        if kind.kind in ("Secret", "ConfigMap") and old.get("immutable"):
            if old.get("data") != new.get("data"):
                causes.append(forbidden_cause("data", "field is immutable when `immutable` is set"))
        if kind.kind == "PersistentVolumeClaim":
            causes += _claim_update_causes(old, new)
        if kind.kind == "StorageClass":
            for field_name in ("provisioner", "parameters", "reclaimPolicy"):
                if old.get(field_name) != new.get(field_name):
                    causes.append(kinds.forbidden(field_name, f"updates to {field_name} are forbidden."))
            if not same("volumeBindingMode"):
                causes.append(kinds.invalid("volumeBindingMode", new.get("volumeBindingMode"), "field is immutable"))
        if kind.kind == "Pod":
            old_spec, new_spec = clone(old.get("spec") or {}), clone(new.get("spec") or {})
            for spec in (old_spec, new_spec):
                for c in spec.get("containers") or []:
                    c.pop("image", None)
                spec.pop("activeDeadlineSeconds", None)
                spec.pop("tolerations", None)
            if old_spec != new_spec:
                causes.append(kinds.forbidden("spec", "pod updates may not change fields other than "
                                              "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                                              "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
                                              "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it "
                                              "to be set to 1 if it was previously negative)"))
        return causes

    # --- patch -----------------------------------------------------------------------------------

    def patch(self, kind: Kind, namespace: str, name: str, patch_type: str, raw: bytes, *, manager: str,
              force: bool = False, subresource: str = "", dry_run: bool = False) -> tuple[Obj, bool]:
        """Returns (object, created)."""
        if patch_type == "application/apply-patch+yaml":
            return self._apply(kind, namespace, name, raw, manager=manager, force=force, subresource=subresource,
                               dry_run=dry_run)
        body = parse_body(raw, patch_type)
        old = self.get(kind, namespace, name)
        current = kinds.to_wire(kind, old)
        try:
            if patch_type == "application/merge-patch+json":
                if not isinstance(body, dict):
                    raise patch.PatchError("json: cannot unmarshal array into Go value of type map[string]interface {}")
                patched = patch.merge_patch(current, body)
            elif patch_type == "application/strategic-merge-patch+json":
                if not isinstance(body, dict):
                    raise patch.PatchError("json: cannot unmarshal array into Go value of type map[string]interface {}")
                patched = patch.strategic_merge(current, body)
            else:
                patched = patch.json_patch(current, body)
        except patch.PatchError as exc:
            raise ApiError(422 if patch_type == "application/json-patch+json" else 400,
                           "Invalid" if patch_type == "application/json-patch+json" else "BadRequest",
                           str(exc)) from None
        if not isinstance(patched, dict):
            raise bad_request("the patched object is not an object")
        new = kinds.from_wire(kind, patched)
        meta = new.setdefault("metadata", {})
        rv = meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(kind, name)
        if meta.get("name") != name:
            raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})")
        self._check_type(kind, new)
        return self.write(kind, old, new, manager=manager, subresource=subresource, dry_run=dry_run), False

    def _apply(self, kind: Kind, namespace: str, name: str, raw: bytes, *, manager: str, force: bool,
               subresource: str, dry_run: bool) -> tuple[Obj, bool]:
        config = parse_body(raw, "application/yaml")
        if not isinstance(config, dict):
            raise bad_request("error decoding YAML: the applied configuration is not an object")
        config = kinds.from_wire(kind, clone(config))
        cfg_meta = config.get("metadata") or {}
        if not config.get("kind") or not config.get("apiVersion"):
            raise bad_request("invalid object type: /, Kind=")
        if config.get("apiVersion") != kind.api_version and kind.bucket != "events":
            raise bad_request(f"the API version in the data ({config.get('apiVersion')}) does not match the expected "
                              f"API version ({kind.api_version})")
        if cfg_meta.get("name") and cfg_meta["name"] != name:
            raise bad_request(f"the name of the object ({cfg_meta['name']}) does not match the name on the URL ({name})")
        if kind.namespaced and cfg_meta.get("namespace") and cfg_meta["namespace"] != namespace:
            raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
        old = self.find(kind, namespace, name)
        reset = self._reset_fields(kind, subresource)
        if old is None:
            if subresource:
                raise not_found(kind, name)
            body = clone(config)
            body.setdefault("metadata", {})["name"] = name
            return self.create(kind, namespace, body, manager=manager, dry_run=dry_run, apply_config=config,
                               force=force), True
        rv = cfg_meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise conflict(kind, name)
        try:
            merged = patch.apply(old, config, manager=manager, api_version=kind.api_version, force=force,
                                 now=kinds.now_iso(), reset=reset, subresource=subresource)
        except patch.ApplyConflict as exc:
            raise ApiError(409, "Conflict", exc.message(), {"causes": exc.causes()}) from None
        return self.write(kind, old, merged, manager=manager, subresource=subresource, dry_run=dry_run,
                          applied=True), False

    # --- delete ----------------------------------------------------------------------------------

    def delete(self, kind: Kind, namespace: str, name: str, *, propagation: str | None = None,
               grace_seconds: int | None = None, preconditions: Obj | None = None,
               dry_run: bool = False) -> tuple[Obj, bool]:
        """Returns (response body, deleted now)."""
        obj = self.get(kind, namespace, name)
        meta = obj["metadata"]
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != meta["uid"]:
                raise conflict(kind, name, f"Precondition failed: UID in precondition: {preconditions['uid']}, UID in "
                                           f"object meta: {meta['uid']}")
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != meta["resourceVersion"]:
                raise conflict(kind, name, "Precondition failed: ResourceVersion in precondition: "
                                           f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                                           f"{meta['resourceVersion']}")
        if dry_run:
            return self._delete_answer(kind, obj), False
        propagation = propagation or default_propagation(kind)
        if propagation not in ("Orphan", "Background", "Foreground"):
            raise invalid(kind, name, [kinds.not_supported("propagationPolicy", propagation,
                                                           ["Foreground", "Background", "Orphan", "nil"])])
        if propagation == "Orphan":
            self.orphan_dependents(meta["uid"])
        graceful = kind.kind == "Namespace" or (kind.kind == "Pod" and (grace_seconds is None or grace_seconds > 0)
                                                 and meta.get("deletionTimestamp") is None)
        if meta.get("deletionTimestamp") and kind.kind != "Pod":
            return self._delete_answer(kind, obj, deleted=False), False
        if kind.kind == "Pod" and grace_seconds == 0:
            graceful = False
        if graceful or propagation == "Foreground" or meta.get("finalizers"):
            new = clone(obj)
            nmeta = new["metadata"]
            nmeta["deletionTimestamp"] = nmeta.get("deletionTimestamp") or kinds.now_iso()
            if kind.kind == "Pod":
                grace = grace_seconds if grace_seconds is not None else \
                    (obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30)
                nmeta["deletionGracePeriodSeconds"] = grace
            else:
                nmeta["deletionGracePeriodSeconds"] = 0
            if propagation == "Foreground":
                fins = nmeta.setdefault("finalizers", [])
                if "foregroundDeletion" not in fins:
                    fins.append("foregroundDeletion")
            if kind.kind == "Namespace":
                new["status"] = {"phase": "Terminating"}
            stored = self.store.put(kind.bucket, new)
            return kinds.to_wire(kind, stored), False
        gone = self.store.delete(kind.bucket, meta.get("namespace", ""), name)
        assert gone is not None
        return self._delete_answer(kind, gone), True

    def _delete_answer(self, kind: Kind, obj: Obj, deleted: bool = True) -> Obj:
        if kind.kind in RETURNS_DELETED or not deleted:
            return kinds.to_wire(kind, obj)
        details = {"name": obj["metadata"]["name"], "kind": kind.plural, "uid": obj["metadata"]["uid"]}
        if kind.group:
            details = {"name": details["name"], "group": kind.group, "kind": kind.plural, "uid": details["uid"]}
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}

    def finish_deletion(self, kind: Kind, namespace: str, name: str) -> None:
        """Remove an object whose graceful deletion or finalizers are done."""
        self.store.delete(kind.bucket, namespace if kind.namespaced else "", name)

    def orphan_dependents(self, owner_uid: str) -> None:
        for bucket, items in list(self.store.buckets.items()):
            for obj in list(items.values()):
                refs = obj["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == owner_uid for r in refs):
                    new = clone(obj)
                    kept = [r for r in refs if r.get("uid") != owner_uid]
                    if kept:
                        new["metadata"]["ownerReferences"] = kept
                    else:
                        new["metadata"].pop("ownerReferences")
                    self.store.put(bucket, new)

    def dependents(self, owner_uid: str) -> list[tuple[Kind, Obj]]:
        out = []
        for bucket, items in self.store.buckets.items():
            for obj in items.values():
                if any(r.get("uid") == owner_uid for r in obj["metadata"].get("ownerReferences") or []):
                    out.append((kinds.kind_for_bucket(bucket), obj))
        return out


def _generate_job_selector(job: Obj) -> None:
    """batch/v1 generates the selector from the Job's uid unless manualSelector is set."""
    spec = job["spec"]
    if spec.get("manualSelector"):
        return
    uid, name = job["metadata"]["uid"], job["metadata"]["name"]
    spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    labels = spec["template"].setdefault("metadata", {}).setdefault("labels", {}) or {}
    spec["template"]["metadata"]["labels"] = labels
    labels.update({"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": name,
                   "controller-uid": uid, "job-name": name})


def _claim_update_causes(old: Obj, new: Obj) -> list[kinds.Cause]:
    """ValidatePersistentVolumeClaimUpdate: only a bound claim's requests (and its attributes class) may change."""
    causes: list[kinds.Cause] = []
    old_spec, new_spec = clone(old.get("spec") or {}), clone(new.get("spec") or {})
    compared_old, compared_new = clone(old_spec), clone(new_spec)
    # The persistentvolume controller sets volumeName once; so may a user who binds by hand.
    if not old_spec.get("volumeName"):
        compared_old.pop("volumeName", None)
        compared_new.pop("volumeName", None)
    # A claim created without a class may get one later (the default class, assigned retroactively).
    if old_spec.get("storageClassName") is None and new_spec.get("storageClassName") is not None:
        compared_new.pop("storageClassName", None)
    bound = (old.get("status") or {}).get("phase") == "Bound"
    requests_old = (compared_old.get("resources") or {}).get("requests") or {}
    if bound and isinstance((compared_new.get("resources") or {}).get("requests"), dict):
        compared_new["resources"]["requests"]["storage"] = requests_old.get("storage")
    compared_old.pop("volumeAttributesClassName", None)
    compared_new.pop("volumeAttributesClassName", None)
    if not _same_quantities(compared_old, compared_new):
        causes.append(kinds.forbidden("spec", "spec is immutable after creation except resources.requests and "
                                              "volumeAttributesClassName for bound claims\n"
                                      + _spec_diff(compared_old, compared_new)))
    old_size = kinds.parse_quantity(((old_spec.get("resources") or {}).get("requests") or {}).get("storage"))
    new_size = kinds.parse_quantity(((new_spec.get("resources") or {}).get("requests") or {}).get("storage"))
    capacity = kinds.parse_quantity(((old.get("status") or {}).get("capacity") or {}).get("storage")) or 0.0
    # RecoverVolumeExpansionFailure: a request may go back down, but never to or below what was allocated.
    if old_size is not None and new_size is not None and new_size < old_size and new_size <= capacity:
        causes.append(kinds.forbidden("spec.resources.requests.storage",
                                      "field can not be less than status.capacity"))
    return causes


def _same_quantities(a: Any, b: Any) -> bool:
    """Semantic equality: "1Gi" and "1024Mi" are the same quantity, as apiequality.Semantic says."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_quantities(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_quantities(x, y) for x, y in zip(a, b))
    if isinstance(a, str) and isinstance(b, str) and a != b:
        qa, qb = kinds.parse_quantity(a), kinds.parse_quantity(b)
        return qa is not None and qa == qb
    return a == b


_GO_FIELDS = {"accessModes": "AccessModes", "selector": "Selector", "resources": "Resources",
              "volumeName": "VolumeName", "storageClassName": "StorageClassName", "volumeMode": "VolumeMode",
              "dataSource": "DataSource", "dataSourceRef": "DataSourceRef",
              "volumeAttributesClassName": "VolumeAttributesClassName"}


def _spec_diff(old: Obj, new: Obj) -> str:
    """A short rendering of the changed fields in the shape of the cmp.Diff kube-apiserver appends."""
    lines = ["  core.PersistentVolumeClaimSpec{"]
    for key in sorted(set(old) | set(new), key=lambda k: list(_GO_FIELDS).index(k) if k in _GO_FIELDS else 99):
        if _same_quantities(old.get(key), new.get(key)):
            continue
        name = _GO_FIELDS.get(key, key)
        lines.append(f"- \t{name}: {json.dumps(old.get(key))},")
        lines.append(f"+ \t{name}: {json.dumps(new.get(key))},")
    lines.append("  }")
    return "\n".join(lines)


def forbidden_cause(path: str, detail: str) -> kinds.Cause:
    return kinds.forbidden(path, detail)


def _same(old: Obj, new: Obj) -> bool:
    """Equal but for the resourceVersion and the managedFields' times, compared without copying
    either object (this runs on every write)."""
    if old.keys() != new.keys():
        return False
    for key, value in old.items():
        if key != "metadata" and value != new[key]:
            return False
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    if old_meta.keys() - {"resourceVersion"} != new_meta.keys() - {"resourceVersion"}:
        return False
    for key, value in old_meta.items():
        if key not in ("resourceVersion", "managedFields") and value != new_meta[key]:
            return False
    old_fields, new_fields = old_meta.get("managedFields") or [], new_meta.get("managedFields") or []
    return len(old_fields) == len(new_fields) and all(
        {k: v for k, v in a.items() if k != "time"} == {k: v for k, v in b.items() if k != "time"}
        for a, b in zip(old_fields, new_fields)
    )


_TOP_ORDER = ("kind", "apiVersion", "metadata", "spec", "data", "stringData", "type", "status")
_META_ORDER = ("name", "generateName", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
               "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences",
               "finalizers", "managedFields")


def _canonical(kind: Kind, obj: Obj) -> Obj:
    """Field order as kube-apiserver serialises it, which keeps stored JSON and diffs readable."""
    out = {k: obj[k] for k in _TOP_ORDER if k in obj}
    out.update({k: v for k, v in obj.items() if k not in out})
    meta = out.get("metadata") or {}
    ordered = {k: meta[k] for k in _META_ORDER if k in meta}
    ordered.update({k: v for k, v in meta.items() if k not in ordered})
    out["metadata"] = ordered
    return out


# An Event's times (metav1.Time, MicroTime), by their stored core/v1 names.
_EVENT_TIMES = ("firstTimestamp", "lastTimestamp", "eventTime")


def _check_event_times(kind: Kind, obj: Obj) -> None:
    """Refuse an Event whose times are not times, as decoding into the Go types does (400),
    rather than storing what later readers cannot parse."""
    series = obj.get("series")
    values = [obj.get(name) for name in _EVENT_TIMES]
    if isinstance(series, dict):
        values.append(series.get("lastObservedTime"))
    for value in values:
        if value is None:
            continue
        if not isinstance(value, str):
            detail = f"json: cannot unmarshal {_json_type(value)} into Go value of type string"
        else:
            detail = kinds.time_parse_error(value)
        if detail:
            raise bad_request(f'{kind.kind} in version "{kind.version}" cannot be handled as a {kind.kind}: {detail}')


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return "array" if isinstance(value, list) else "object"
