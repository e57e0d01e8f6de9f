"""JSON merge patch, strategic merge patch, JSON patch and server-side apply with managedFields.

The list semantics mirror the Kubernetes OpenAPI schema for the kinds the devcluster serves:
`patchMergeKey`/`patchStrategy` for strategic merge, `listType`/`listMapKeys` and atomic
structs/maps for server-side apply.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import AbstractSet, Any

from .jsontree import clone

Obj = dict[str, Any]
Path = tuple[str, ...]  # elements "f:name", "k:{...}", "v:...", "i:N" as in fieldsV1


class PatchError(Exception):
    """The patch could not be applied (a JSON patch op failed, a body of the wrong shape)."""


# --- schema knowledge ------------------------------------------------------------------------------

_CONTAINER_LISTS = ("containers", "initContainers", "ephemeralContainers")

# listType=map lists and their listMapKeys (SSA) — the first key is the SMP patchMergeKey.
_MAP_LISTS: dict[str, tuple[str, ...]] = {
    "containers": ("name",), "initContainers": ("name",), "ephemeralContainers": ("name",),
    "env": ("name",), "volumes": ("name",), "volumeMounts": ("mountPath",), "volumeDevices": ("devicePath",),
    "imagePullSecrets": ("name",), "hostAliases": ("ip",), "conditions": ("type",), "ownerReferences": ("uid",),
    "topologySpreadConstraints": ("topologyKey", "whenUnsatisfiable"), "resourceClaims": ("name",),
    "schedulingGates": ("name",), "containerStatuses": ("name",), "initContainerStatuses": ("name",),
}
_SET_LISTS = {"finalizers"}
# LabelSelector is structType=atomic; Service.spec.selector and PodSpec.nodeSelector are mapType=atomic.
_ATOMIC_MAPS = {"selector", "podSelector", "namespaceSelector", "nodeSelector", "labelSelector"}


def _list_keys(names: tuple[str, ...]) -> tuple[str, ...] | None:
    """listMapKeys for the list at this field path (field names only), or None when atomic/set."""
    if not names:
        return None
    name = names[-1]
    if name == "ports":
        if len(names) >= 2 and names[-2] in _CONTAINER_LISTS:
            return ("containerPort", "protocol")
        if names == ("spec", "ports"):
            return ("port", "protocol")
        return None
    if name == "conditions" and names[0] != "status":
        return None
    return _MAP_LISTS.get(name)


def _smp_merge_key(names: tuple[str, ...]) -> str | None:
    name = names[-1] if names else ""
    if name == "ports":
        if len(names) >= 2 and names[-2] in _CONTAINER_LISTS:
            return "containerPort"
        if names == ("spec", "ports"):
            return "port"
        return None
    if name in ("topologySpreadConstraints",):
        return "topologyKey"
    keys = _list_keys(names)
    return keys[0] if keys else None


_KEY_DEFAULTS = {"protocol": "TCP"}


def _item_key(item: Obj, keys: tuple[str, ...]) -> tuple[Any, ...]:
    return tuple(item.get(k, _KEY_DEFAULTS.get(k)) for k in keys)


# --- JSON merge patch (RFC 7386) -------------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- strategic merge patch --------------------------------------------------------------------------

def strategic_merge(original: Any, patch: Any, names: tuple[str, ...] = ()) -> Any:
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives(patch)
    if directive == "delete":
        return None
    result = clone(original) if isinstance(original, dict) else {}
    orders = {k.split("/", 1)[1]: v for k, v in patch.items() if k.startswith("$setElementOrder/")}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            fname = key.split("/", 1)[1]
            result[fname] = [x for x in result.get(fname) or [] if x not in value]
            continue
        if value is None:
            result.pop(key, None)
            continue
        sub = names + (key,)
        if isinstance(value, list):
            result[key] = _smp_list(result.get(key) or [], value, sub, orders.get(key))
        elif isinstance(value, dict):
            merged = strategic_merge(result.get(key), value, sub)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        else:
            result[key] = value
    for key, order in orders.items():
        if key not in patch and isinstance(result.get(key), list):
            result[key] = _smp_order(result[key], order, names + (key,))
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(original: list, patch: list, names: tuple[str, ...], order: list | None) -> list:
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip_directives(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    if names[-1] in _SET_LISTS:
        out = list(original)
        out += [x for x in patch if x not in out]
        return out
    mkey = _smp_merge_key(names)
    if mkey is None:
        return [_strip_directives(i) if isinstance(i, dict) else i for i in patch]
    result = clone(original)
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"unable to find api field in struct for the merge key {mkey!r}")
        idx = next((i for i, o in enumerate(result) if isinstance(o, dict) and o.get(mkey) == item.get(mkey)), None)
        if item.get("$patch") == "delete":
            result = [o for o in result if not (isinstance(o, dict) and o.get(mkey) == item.get(mkey))]
        elif idx is None:
            result.append(_strip_directives(item))
        else:
            result[idx] = strategic_merge(result[idx], item, names)
    if order:
        result = _smp_order(result, order, names)
    return result


def _smp_order(items: list, order: list, names: tuple[str, ...]) -> list:
    mkey = _smp_merge_key(names)
    if mkey is None:
        return items
    rank = {json.dumps(o.get(mkey) if isinstance(o, dict) else o): i for i, o in enumerate(order)}
    return sorted(items, key=lambda o: rank.get(json.dumps(o.get(mkey) if isinstance(o, dict) else o), len(rank)))


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


# --- JSON patch (RFC 6902) ------------------------------------------------------------------------

def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise PatchError("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = clone(doc)
    for op in ops:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _pointer_set(doc, path, clone(op.get("value")), insert=True)
        elif kind == "remove":
            doc = _pointer_remove(doc, path)
        elif kind == "replace":
            _pointer_get(doc, path)
            doc = _pointer_set(doc, path, clone(op.get("value")), insert=False)
        elif kind == "move":
            value = _pointer_get(doc, op.get("from", ""))
            doc = _pointer_remove(doc, op.get("from", ""))
            doc = _pointer_set(doc, path, value, insert=True)
        elif kind == "copy":
            doc = _pointer_set(doc, path, clone(_pointer_get(doc, op.get("from", ""))), insert=True)
        elif kind == "test":
            if _pointer_get(doc, path) != op.get("value"):
                raise PatchError(f"testing value {path} failed: test failed")
        else:
            raise PatchError(f"Unexpected kind: {kind}")
    return doc


def _tokens(pointer: str) -> list[str]:
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"invalid JSON pointer: {pointer!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in pointer[1:].split("/")]


def _parent(doc: Any, pointer: str) -> tuple[Any, str]:
    tokens = _tokens(pointer)
    if not tokens:
        raise PatchError("cannot operate on the document root")
    cur = doc
    for t in tokens[:-1]:
        cur = _step(cur, t, pointer)
    return cur, tokens[-1]


def _step(cur: Any, token: str, pointer: str) -> Any:
    if isinstance(cur, dict) and token in cur:
        return cur[token]
    if isinstance(cur, list) and token.isdigit() and int(token) < len(cur):
        return cur[int(token)]
    raise PatchError(f"doc is missing path: {pointer!r}: missing value")


def _pointer_get(doc: Any, pointer: str) -> Any:
    cur = doc
    for t in _tokens(pointer):
        cur = _step(cur, t, pointer)
    return cur


def _pointer_set(doc: Any, pointer: str, value: Any, *, insert: bool) -> Any:
    if pointer == "":
        return value
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            if insert:
                parent.insert(int(last), value)
            elif int(last) < len(parent):
                parent[int(last)] = value
            else:
                raise PatchError(f"replace operation does not apply: doc is missing key: {pointer}: missing value")
        else:
            raise PatchError(f"add operation does not apply: doc is missing path: {pointer!r}: missing value")
    else:
        raise PatchError(f"doc is missing path: {pointer!r}: missing value")
    return doc


def _pointer_remove(doc: Any, pointer: str) -> Any:
    parent, last = _parent(doc, pointer)
    if isinstance(parent, dict) and last in parent:
        del parent[last]
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        del parent[int(last)]
    else:
        raise PatchError(f"remove operation does not apply: doc is missing path: {pointer!r}: missing value")
    return doc


# --- field sets -----------------------------------------------------------------------------------

_UNTRACKED_META = {"name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "managedFields", "selfLink"}


def _key_elem(item: Obj, keys: tuple[str, ...]) -> str:
    values = {k: item.get(k, _KEY_DEFAULTS.get(k)) for k in keys}
    return "k:" + json.dumps(dict(sorted(values.items())), separators=(",", ":"))


def _names(path: Path) -> tuple[str, ...]:
    return tuple(e[2:] for e in path if e.startswith("f:"))


def _tracked_roots(obj: Obj, reset: AbstractSet[str]) -> Obj:
    out = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind") and k not in reset}
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = {k: v for k, v in out["metadata"].items() if k not in _UNTRACKED_META}
        if not out["metadata"]:
            del out["metadata"]
    return out


def field_set(obj: Obj, reset: AbstractSet[str] = frozenset()) -> set[Path]:
    """Leaves and list items of an applied configuration, as fieldsV1 paths."""
    out: set[Path] = set()
    _walk(_tracked_roots(obj, set(reset)), (), out)
    return out


def _walk(value: Any, path: Path, out: set[Path]) -> None:
    names = _names(path)
    if isinstance(value, dict):
        if not value or (names and names[-1] in _ATOMIC_MAPS):
            if path:
                out.add(path)
            return
        for k, v in value.items():
            _walk(v, path + (f"f:{k}",), out)
        return
    if isinstance(value, list) and names:
        keys = _list_keys(names)
        if keys is not None and all(isinstance(i, dict) for i in value):
            if not value:
                out.add(path)
            for item in value:
                item_path = path + (_key_elem(item, keys),)
                out.add(item_path)
                for k, v in item.items():
                    _walk(v, item_path + (f"f:{k}",), out)
            return
        if names[-1] in _SET_LISTS:
            for item in value:
                out.add(path + ("v:" + json.dumps(item, separators=(",", ":")),))
            if not value:
                out.add(path)
            return
    out.add(path)


_MISSING = object()


@lru_cache(maxsize=4096)
def _decoded(elem: str) -> Any:
    """The JSON of a `k:` or `v:` path element (few distinct ones, looked up over and over)."""
    return json.loads(elem[2:])


def _field_step(cur: Any, elem: str) -> Any:
    if elem.startswith("f:"):
        if not isinstance(cur, dict) or elem[2:] not in cur:
            return _MISSING
        return cur[elem[2:]]
    if elem.startswith("k:"):
        if not isinstance(cur, list):
            return _MISSING
        want = _decoded(elem)
        keys, values = tuple(want), tuple(want.values())
        return next((i for i in cur if isinstance(i, dict) and _item_key(i, keys) == values), _MISSING)
    if elem.startswith("v:"):
        want = _decoded(elem)
        if not isinstance(cur, list) or want not in cur:
            return _MISSING
        return cur[cur.index(want)]
    return _MISSING


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for elem in path:
        cur = _field_step(cur, elem)
        if cur is _MISSING:
            return cur
    return cur


class _Values(dict):
    """`value_at(obj, path)` for many paths of one object, each prefix walked once."""

    def __init__(self, obj: Any) -> None:
        super().__init__()
        self[()] = obj

    def __missing__(self, path: Path) -> Any:
        parent = self[path[:-1]]
        value = _MISSING if parent is _MISSING else _field_step(parent, path[-1])
        self[path] = value
        return value


def _remove_at(obj: Obj, path: Path) -> None:
    """Remove the field at path, then drop maps that this left empty (Go's omitempty would)."""
    parents: list[tuple[Any, str]] = []
    cur: Any = obj
    for elem in path[:-1]:
        nxt = value_at(cur, (elem,))
        if nxt is _MISSING:
            return
        parents.append((cur, elem))
        cur = nxt
    last = path[-1]
    if last.startswith("f:") and isinstance(cur, dict):
        cur.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(cur, list):
        target = value_at(cur, (last,))
        if target is not _MISSING:
            cur.remove(target)
    elif last.startswith("v:") and isinstance(cur, list):
        value = json.loads(last[2:])
        if value in cur:
            cur.remove(value)
    for parent, elem in reversed(parents):
        child = value_at(parent, (elem,))
        if child in ({}, []) and elem.startswith("f:") and isinstance(parent, dict):
            parent.pop(elem[2:], None)
        else:
            break


def changed_fields(old: Obj | None, new: Obj, reset: AbstractSet[str] = frozenset()) -> set[Path]:
    """Fields an update set or changed, including maps and list items it created."""
    new_set = field_set(new, reset)
    out: set[Path] = set()
    old_values, new_values = _Values(old), _Values(new)
    for p in new_set:
        if old is None or old_values[p] != new_values[p]:
            out.add(p)
            # Containers (maps, list items) created by this update are owned by it too.
            for i in range(1, len(p)):
                prefix = p[:i]
                if old is None or old_values[prefix] is _MISSING:
                    out.add(prefix)
    return out


def to_fields_v1(paths: set[Path]) -> Obj:
    root: Obj = {}
    members: set[Path] = set(paths)
    for p in paths:
        node = root
        for elem in p:
            node = node.setdefault(elem, {})

    def render(node: Obj, prefix: Path) -> Obj:
        out: Obj = {}
        if node and prefix in members:
            out["."] = {}
        for k in sorted(node):
            out[k] = render(node[k], prefix + (k,))
        return out

    return render(root, ())


def from_fields_v1(tree: Obj, prefix: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for k, v in (tree or {}).items():
        if k == ".":
            out.add(prefix)
        elif not v:
            out.add(prefix + (k,))
        else:
            out |= from_fields_v1(v, prefix + (k,))
    return out


def path_string(path: Path) -> str:
    """`.spec.template.spec.containers[name="web"].image`, the spelling of apply conflicts."""
    out = ""
    for elem in path:
        if elem.startswith("f:"):
            out += "." + elem[2:]
        elif elem.startswith("k:"):
            values = json.loads(elem[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in values.items()) + "]"
        elif elem.startswith("v:"):
            out += "[=" + elem[2:] + "]"
        else:
            out += "[" + elem[2:] + "]"
    return out


# --- managedFields --------------------------------------------------------------------------------

@dataclass
class Entry:
    manager: str
    operation: str
    api_version: str
    time: str
    fields: set[Path]
    subresource: str = ""
    # The entry as read (`read_entries`): its fieldsV1 and the set it parsed to, so that an entry
    # whose fields did not change is written back without rendering them again.
    read_fields: frozenset[Path] | None = None
    read_fields_v1: Obj | None = None

    def as_dict(self) -> Obj:
        if self.read_fields_v1 is not None and self.fields == self.read_fields:
            fields_v1 = clone(self.read_fields_v1)
        else:
            fields_v1 = to_fields_v1(self.fields)
        out: Obj = {"manager": self.manager, "operation": self.operation, "apiVersion": self.api_version,
                    "time": self.time, "fieldsType": "FieldsV1", "fieldsV1": fields_v1}
        if self.subresource:
            out["subresource"] = self.subresource
        return out

    def same_identity(self, manager: str, operation: str, subresource: str) -> bool:
        return (self.manager, self.operation, self.subresource) == (manager, operation, subresource)

    def label(self) -> str:
        name = json.dumps(self.manager)
        if self.subresource:
            name += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            return f"{name} using {self.api_version}"
        return name


def read_entries(obj: Obj | None) -> list[Entry]:
    if not obj:
        return []
    out = []
    for e in (obj.get("metadata") or {}).get("managedFields") or []:
        fields_v1 = e.get("fieldsV1") or {}
        fields = from_fields_v1(fields_v1)
        out.append(Entry(e.get("manager", ""), e.get("operation", "Update"), e.get("apiVersion", ""),
                         e.get("time", ""), fields, e.get("subresource", ""),
                         read_fields=frozenset(fields), read_fields_v1=fields_v1))
    return out


def write_entries(obj: Obj, entries: list[Entry]) -> None:
    kept = [e for e in entries if e.fields]
    if kept:
        obj["metadata"]["managedFields"] = [e.as_dict() for e in kept]
    else:
        obj["metadata"].pop("managedFields", None)


@dataclass
class Conflict:
    manager: str  # already rendered, e.g. `"kubectl" using apps/v1`
    path: Path


class ApplyConflict(Exception):
    def __init__(self, conflicts: list[Conflict]):
        self.conflicts = conflicts
        super().__init__(self.message())

    def message(self) -> str:
        if len(self.conflicts) == 1:
            c = self.conflicts[0]
            return f"Apply failed with 1 conflict: conflict with {c.manager}: {path_string(c.path)}"
        by_manager: dict[str, list[Path]] = {}
        for c in self.conflicts:
            by_manager.setdefault(c.manager, []).append(c.path)
        lines = []
        for manager in sorted(by_manager):
            lines.append(f"conflicts with {manager}:")
            lines += [f"- {path_string(p)}" for p in by_manager[manager]]
        return f"Apply failed with {len(self.conflicts)} conflicts: " + "\n".join(lines)

    def causes(self) -> list[Obj]:
        return [{"reason": "FieldManagerConflict", "message": f"conflict with {c.manager}", "field": path_string(c.path)}
                for c in self.conflicts]


def ssa_merge(live: Any, config: Any, names: tuple[str, ...] = ()) -> Any:
    """Merge an applied configuration onto the live object following listType/mapType semantics."""
    if isinstance(config, dict) and isinstance(live, dict) and not (names and names[-1] in _ATOMIC_MAPS):
        result = clone(live)
        for k, v in config.items():
            if v is None:
                result.pop(k, None)
            else:
                result[k] = ssa_merge(live.get(k), v, names + (k,))
        return result
    if isinstance(config, list) and isinstance(live, list) and names:
        keys = _list_keys(names)
        if keys is not None and all(isinstance(i, dict) for i in config + live):
            result = clone(live)
            for item in config:
                idx = next((i for i, o in enumerate(result) if _item_key(o, keys) == _item_key(item, keys)), None)
                if idx is None:
                    result.append(clone(item))
                else:
                    result[idx] = ssa_merge(result[idx], item, names)
            return result
        if names[-1] in _SET_LISTS:
            return list(live) + [x for x in config if x not in live]
    return clone(config)


def _covered(path: Path, owned: set[Path]) -> bool:
    """Whether someone owns this path or anything beneath it."""
    n = len(path)
    return any(p[:n] == path for p in owned)


def apply(live: Obj | None, config: Obj, *, manager: str, api_version: str, force: bool, now: str,
          reset: AbstractSet[str] = frozenset(), subresource: str = "") -> Obj:
    """Server-side apply: returns the merged object with updated managedFields, or raises ApplyConflict."""
    entries = read_entries(live)
    applied = field_set(config, set(reset))
    base = clone(live) if live else {}
    cfg = {k: v for k, v in config.items() if k not in reset}
    merged = ssa_merge(base, cfg)
    mine = next((e for e in entries if e.same_identity(manager, "Apply", subresource)), None)
    others = [e for e in entries if e is not mine]

    conflicts: list[Conflict] = []
    if live is not None:
        live_values, merged_values = _Values(live), _Values(merged)
        for e in others:
            for p in sorted(e.fields & applied):
                if live_values[p] is not _MISSING and live_values[p] != merged_values[p]:
                    conflicts.append(Conflict(e.label(), p))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    if conflicts:
        lost = {c.path for c in conflicts}
        for e in others:
            e.fields -= lost

    if mine is not None:
        still_owned: set[Path] = set().union(*(e.fields for e in others)) if others else set()
        doomed = {p for p in mine.fields - applied if not _covered(p, still_owned) and not _covered(p, applied)}
        # Remove the outermost paths only: a list item must go whole, not field by field (its key would vanish first).
        for p in sorted(doomed, key=len):
            if not any(p[:i] in doomed for i in range(1, len(p))):
                _remove_at(merged, p)
        mine.fields = applied
        mine.time, mine.api_version = now, api_version
    else:
        mine = Entry(manager, "Apply", api_version, now, applied, subresource)
        entries.append(mine)
    values = _Values(merged)
    for e in entries:
        e.fields = {p for p in e.fields if values[p] is not _MISSING}
    merged.setdefault("metadata", {})
    write_entries(merged, entries)
    return merged


def record_update(old: Obj | None, new: Obj, *, manager: str, api_version: str, now: str,
                  reset: AbstractSet[str] = frozenset(), subresource: str = "") -> None:
    """Update managedFields of `new` for a non-apply write: the writer takes what it changed."""
    entries = read_entries(old)
    changed = changed_fields(old, new, set(reset))
    for e in entries:
        e.fields -= changed
    if changed:
        mine = next((e for e in entries if e.same_identity(manager, "Update", subresource)), None)
        if mine is None:
            mine = Entry(manager, "Update", api_version, now, set(), subresource)
            entries.append(mine)
        mine.fields |= changed
        mine.time, mine.api_version = now, api_version
    values = _Values(new)
    for e in entries:
        e.fields = {p for p in e.fields if values[p] is not _MISSING}
    new.setdefault("metadata", {})
    write_entries(new, entries)
