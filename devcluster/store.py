"""Object storage with one global resourceVersion counter, a bounded change history and watchers.

Everything runs on the server's event loop, so no locking is needed: each mutation is atomic with
respect to readers, exactly like a single etcd revision.

The history is kept per bucket, as kube-apiserver keeps a watch cache per resource: a storm of
Events or ReplicaSet updates does not push the Pods' recent changes out, so a pod watch that
reconnects resumes where it was instead of getting 410 Gone and relisting everything. Each
bucket keeps its last `history_size` changes: memory stays bounded by kinds × history.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import tempfile
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from .jsontree import clone, to_json

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects


@dataclass
class Change:
    rv: int
    bucket: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Obj
    prev: Obj | None


@dataclass(eq=False)
class Watcher:
    bucket: str
    accepts: Callable[[Obj], bool]
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    closed: bool = False
    abrupt: bool = False

    def close(self) -> None:
        """Ends the stream from the server side (used when faults drop watches)."""
        self.closed = True
        self.queue.put_nowait(None)


class Expired(Exception):
    def __init__(self, requested: int, oldest: int):
        super().__init__(f"too old resource version: {requested} ({oldest})")
        self.requested, self.oldest = requested, oldest


# Changes kept per bucket: 10,000 pods going through a stop and a start fit several times over.
DEFAULT_HISTORY_SIZE = 10_000


class Store:
    def __init__(self, history_size: int = DEFAULT_HISTORY_SIZE):
        self.rv = 1
        self.buckets: dict[str, dict[Key, Obj]] = {}
        self.history_size = history_size
        self.history: dict[str, deque[Change]] = {}
        # Resource versions below this are too old for any bucket (a fresh watch cache, or an
        # etcd compaction); each bucket also forgets what fell out of its own history.
        self.compacted_rv = 1
        self._compacted: dict[str, int] = {}
        # bucket -> namespace -> the keys of that namespace: a namespaced list (what every
        # controller asks for) costs the namespace's objects, not the whole cluster's.
        self._namespaces: dict[str, dict[str, set[Key]]] = {}
        # bucket -> controller owner uid -> the keys it controls: a ReplicaSet's pods without a
        # scan of its namespace (the controllers ask on every sync).
        self._controlled: dict[str, dict[str, set[Key]]] = {}
        self.watchers: set[Watcher] = set()
        self.listeners: list[Callable[[Change], None]] = []
        self.on_dirty: Callable[[], None] | None = None

    # --- reads -----------------------------------------------------------------------------------

    def get(self, bucket: str, namespace: str, name: str) -> Obj | None:
        return self.buckets.get(bucket, {}).get((namespace, name))

    def list(self, bucket: str, namespace: str | None = None) -> list[Obj]:
        items = self.buckets.get(bucket, {})
        if namespace is None:
            keys = sorted(items)
        else:
            keys = sorted(self._namespaces.get(bucket, {}).get(namespace, ()))
        return [items[k] for k in keys]

    def iter_namespace(self, bucket: str, namespace: str) -> list[Obj]:
        """The objects of `bucket` in `namespace`, in no particular order (`list` sorts them)."""
        items = self.buckets.get(bucket, {})
        return [items[k] for k in self._namespaces.get(bucket, {}).get(namespace, ())]

    def count(self, bucket: str, namespace: str) -> int:
        """How many objects of `bucket` `namespace` holds."""
        return len(self._namespaces.get(bucket, {}).get(namespace, ()))

    def oldest_rv(self, bucket: str) -> int:
        """The oldest resourceVersion a watch or a list continuation of `bucket` may resume from."""
        return max(self.compacted_rv, self._compacted.get(bucket, 0))

    def controlled(self, bucket: str, owner_uid: str) -> list[Obj]:
        """The objects of `bucket` whose controller (owner reference) has this uid, in key order."""
        items = self.buckets.get(bucket, {})
        return [items[k] for k in sorted(self._controlled.get(bucket, {}).get(owner_uid, ()))]

    def _index(self, bucket: str, key: Key, prev: Obj | None, obj: Obj | None) -> None:
        if prev is None:
            self._namespaces.setdefault(bucket, {}).setdefault(key[0], set()).add(key)
        elif obj is None:
            keys = self._namespaces[bucket][key[0]]
            keys.discard(key)
            if not keys:
                del self._namespaces[bucket][key[0]]
        before, after = _controller(prev), _controller(obj)
        if before != after:
            owners = self._controlled.setdefault(bucket, {})
            if before is not None:
                keys = owners.get(before, set())
                keys.discard(key)
                if not keys:
                    owners.pop(before, None)
            if after is not None:
                owners.setdefault(after, set()).add(key)

    def snapshot(self, bucket: str, at_rv: int) -> dict[Key, Obj]:
        """The bucket as it was at `at_rv`, rebuilt by undoing newer changes (for consistent paging)."""
        oldest = self.oldest_rv(bucket)
        if at_rv < oldest:
            raise Expired(at_rv, oldest)
        items = dict(self.buckets.get(bucket, {}))
        for change in reversed(self.history.get(bucket, ())):
            if change.rv <= at_rv:
                break
            key = _key(change.obj)
            if change.type == "ADDED":
                items.pop(key, None)
            else:
                items[key] = change.prev if change.prev is not None else change.obj
        return items

    # --- writes ----------------------------------------------------------------------------------

    def next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def put(self, bucket: str, obj: Obj) -> Obj:
        """Create or replace; assigns the next resourceVersion and notifies watchers."""
        key = _key(obj)
        prev = self.buckets.setdefault(bucket, {}).get(key)
        rv = self.next_rv()
        obj["metadata"]["resourceVersion"] = str(rv)
        self.buckets[bucket][key] = obj
        self._index(bucket, key, prev, obj)
        self._record(Change(rv, bucket, "MODIFIED" if prev is not None else "ADDED", obj, prev))
        return obj

    def delete(self, bucket: str, namespace: str, name: str) -> Obj | None:
        prev = self.buckets.get(bucket, {}).pop((namespace, name), None)
        if prev is None:
            return None
        self._index(bucket, (namespace, name), prev, None)
        rv = self.next_rv()
        # The DELETED event carries the last state with the deletion's RV, as etcd watches do.
        gone = clone(prev)
        gone["metadata"]["resourceVersion"] = str(rv)
        self._record(Change(rv, bucket, "DELETED", gone, prev))
        return gone

    def _record(self, change: Change) -> None:
        history = self.history.get(change.bucket)
        if history is None:
            history = self.history[change.bucket] = deque(maxlen=self.history_size)
        if len(history) == history.maxlen:
            self._compacted[change.bucket] = history[0].rv
        history.append(change)
        for w in list(self.watchers):
            if w.bucket == change.bucket and not w.closed:
                w.queue.put_nowait(change)
        for listener in self.listeners:
            listener(change)
        if self.on_dirty:
            self.on_dirty()

    # --- watch -----------------------------------------------------------------------------------

    def changes_since(self, bucket: str, rv: int) -> list[Change]:
        oldest = self.oldest_rv(bucket)
        if rv < oldest:
            raise Expired(rv, oldest)
        history = self.history.get(bucket, ())
        # Newest last: walk back only as far as needed (a watch resumes from a recent version).
        newer = []
        for change in reversed(history):
            if change.rv <= rv:
                break
            newer.append(change)
        newer.reverse()
        return newer

    def add_watcher(self, watcher: Watcher) -> None:
        self.watchers.add(watcher)

    def remove_watcher(self, watcher: Watcher) -> None:
        self.watchers.discard(watcher)

    def drop_watchers(self) -> int:
        dropped = list(self.watchers)
        for w in dropped:
            w.close()
        self.watchers.clear()
        return len(dropped)

    # --- persistence -----------------------------------------------------------------------------

    def dump(self) -> Obj:
        return {"rv": self.rv, "buckets": {b: list(items.values()) for b, items in self.buckets.items()}}

    def load(self, data: Obj) -> None:
        self.rv = int(data.get("rv", 1))
        self.compacted_rv = self.rv
        self.buckets = {b: {_key(o): o for o in objs} for b, objs in data.get("buckets", {}).items()}
        self._namespaces, self._controlled = {}, {}
        for bucket, items in self.buckets.items():
            for key, obj in items.items():
                self._index(bucket, key, None, obj)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".state-")
        with os.fdopen(fd, "wb") as f:
            f.write(to_json(self.dump()))
        os.replace(tmp, path)


def _controller(obj: Obj | None) -> str | None:
    if obj is None:
        return None
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref.get("uid")
    return None


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


def encode_continue(rv: int, start: str) -> str:
    # The same token layout as kube-apiserver's etcd3 storage, so it looks familiar in logs.
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start + "\x00"}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, str]:
    padded = token + "=" * (-len(token) % 4)
    data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    if data.get("v") != "meta.k8s.io/v1":
        raise ValueError("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    return int(data["rv"]), str(data["start"]).rstrip("\x00")


def object_key(obj: Obj) -> str:
    ns, name = _key(obj)
    return f"{ns}/{name}" if ns else name


def iter_after(objs: Iterable[Obj], start: str) -> Iterable[Obj]:
    for o in objs:
        if object_key(o) > start:
            yield o
