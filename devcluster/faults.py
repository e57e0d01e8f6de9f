"""Fault injection for reliability tests: latency, error answers, write conflicts, dropped watches.

Rules are added from the test's thread and read by the server's event loop, hence the lock.
`count=N` makes a rule deterministic: exactly the next N matching requests are affected.
"""
from __future__ import annotations

import random
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Rule:
    id: int
    path: re.Pattern[str]
    methods: tuple[str, ...] | None
    latency: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    conflict: bool = False
    share: float = 1.0
    remaining: int | None = None
    message: str | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.methods is not None and method.upper() not in self.methods:
            return False
        return bool(self.path.search(path))

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path.pattern, "methods": list(self.methods or []),
                "latency": self.latency, "status": self.status, "retry_after": self.retry_after,
                "conflict": self.conflict, "share": self.share, "remaining": self.remaining}


@dataclass
class Effect:
    """What the server must do to one request: wait, then maybe answer with an error."""
    latency: float = 0.0
    status: int | None = None
    retry_after: int | None = None
    conflict: bool = False
    message: str | None = None


# The write log keeps this many entries (a long-running `make run` must not grow without end);
# the count is exact whatever the log kept.
WRITES_KEPT = 100_000


@dataclass
class Writes:
    """Every write request the server received, in order: `(method, path, status)`. Tests read
    it to assert that a reconcile of something unchanged writes nothing, and in what order two
    tasks wrote; benchmarks read its count. Appended on the server's loop, read from any thread."""
    _log: deque[tuple[str, str, int]] = field(default_factory=lambda: deque(maxlen=WRITES_KEPT))
    _count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, path: str, status: int) -> None:
        if method.upper() in WRITE_METHODS:
            with self._lock:
                self._log.append((method.upper(), path, status))
                self._count += 1

    def log(self) -> list[tuple[str, str, int]]:
        with self._lock:
            return list(self._log)

    def count(self) -> int:
        with self._lock:
            return self._count

    def clear(self) -> int:
        with self._lock:
            count, self._count = self._count, 0
            self._log.clear()
            return count

    def handle_admin(self, method: str) -> dict[str, Any]:
        """GET /_devcluster/writes: the count and the log; DELETE: empty both."""
        if method == "DELETE":
            return {"cleared": self.clear()}
        with self._lock:
            count, log = self._count, list(self._log)
        return {"count": count, "writes": [{"method": m, "path": p, "status": s} for m, p, s in log]}


@dataclass
class Faults:
    drop: Callable[[bool], int] = field(default=lambda abrupt: 0, repr=False)
    seed: int | None = None
    _rules: list[Rule] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _next_id: int = 1

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def add(self, *, path: str = ".*", method: str | list[str] | None = None, latency: float = 0.0,
            status: int | None = None, retry_after: int | None = None, conflict: bool = False,
            share: float = 1.0, count: int | None = None, message: str | None = None) -> int:
        """Add a rule; returns its id. `method` may be one method, a list, or "WRITE" for POST/PUT/PATCH/DELETE."""
        if not 0.0 <= share <= 1.0:
            raise ValueError("share must be between 0 and 1")
        if isinstance(method, str):
            methods: tuple[str, ...] | None = WRITE_METHODS if method.upper() == "WRITE" else (method.upper(),)
        elif method:
            methods = tuple(m.upper() for m in method)
        else:
            methods = None
        with self._lock:
            rule = Rule(self._next_id, re.compile(path), methods, latency, status, retry_after, conflict, share, count,
                        message)
            self._next_id += 1
            self._rules.append(rule)
            return rule.id

    def latency(self, seconds: float, **match: Any) -> int:
        return self.add(latency=seconds, **match)

    def error(self, status: int = 500, **match: Any) -> int:
        return self.add(status=status, **match)

    def throttle(self, retry_after: int = 1, **match: Any) -> int:
        """Answer 429 Too Many Requests with a Retry-After header, like API priority and fairness."""
        return self.add(status=429, retry_after=retry_after, **match)

    def conflict(self, **match: Any) -> int:
        """Reject matching writes with 409 Conflict, as if someone else had just updated the object."""
        match.setdefault("method", "WRITE")
        return self.add(conflict=True, **match)

    def remove(self, rule_id: int) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule_id]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def rules(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.describe() for r in self._rules]

    def drop_watches(self, abrupt: bool = False) -> int:
        """End every open watch stream now; `abrupt` resets the connection instead of ending the response."""
        return self.drop(abrupt)

    def effect(self, method: str, path: str) -> Effect:
        out = Effect()
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(method, path):
                    continue
                if rule.share < 1.0 and self._random.random() >= rule.share:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                out.latency += rule.latency
                if out.status is None and not out.conflict:
                    if rule.conflict:
                        out.conflict = True
                    elif rule.status is not None:
                        out.status, out.retry_after, out.message = rule.status, rule.retry_after, rule.message
        return out

    def handle_admin(self, body: dict[str, Any]) -> dict[str, Any]:
        """The JSON form of this API, served at POST /_devcluster/faults."""
        action = body.pop("action", "add")
        if action == "clear":
            self.clear()
            return {"cleared": True}
        if action == "drop_watches":
            return {"dropped": self.drop_watches(bool(body.get("abrupt", False)))}
        if action == "remove":
            self.remove(int(body["id"]))
            return {"removed": int(body["id"])}
        if action == "list":
            return {"rules": self.rules()}
        if action == "add":
            allowed = {"path", "method", "latency", "status", "retry_after", "conflict", "share", "count", "message"}
            unknown = set(body) - allowed
            if unknown:
                raise ValueError(f"unknown fault fields: {sorted(unknown)}")
            return {"id": self.add(**body)}
        raise ValueError(f"unknown action {action!r}")
