"""One controller's work queue: keys in order, each at most once, changes to what an object asks
for ahead of changes to what it reports."""
from __future__ import annotations

Key = tuple[str, str, str]

# While keys of spec changes wait, a key of a status change takes a turn after this many of theirs.
STATUS_SHARE = 4


class WorkQueue:
    """A controller's keys (client-go's workqueue: a key waiting is not queued twice) in two
    lanes. `spec`: a change to what the key's object asks for (created, deleted, a new generation:
    a user's scale, the ReplicaSet a rollout scales, a pod to schedule). `status`: what objects
    report (a pod Ready, a ReplicaSet's counts), most of a storm's changes. The spec lane goes
    first; the status lane takes a turn after every `STATUS_SHARE` of its keys, so a storm of
    spec changes delays reports, never stops them."""

    def __init__(self) -> None:
        self.spec: dict[Key, None] = {}
        self.status: dict[Key, None] = {}
        self._since_status = 0

    def __len__(self) -> int:
        return len(self.spec) + len(self.status)

    def __contains__(self, key: Key) -> bool:
        return key in self.spec or key in self.status

    def put(self, key: Key, spec: bool) -> None:
        if key in self.spec:
            return
        if spec:
            # A key waiting for a report moves up: the sync it gets covers both.
            self.status.pop(key, None)
            self.spec[key] = None
        else:
            self.status[key] = None

    def pop(self) -> Key:
        """The next key (the queue must not be empty)."""
        if self.status and (not self.spec or self._since_status >= STATUS_SHARE):
            lane = self.status
            self._since_status = 0
        else:
            lane = self.spec
            self._since_status += 1
        key = next(iter(lane))
        del lane[key]
        return key
