"""What a service card shows, derived from what the cluster says.

`derive_status` is pure: it takes the service's desired state and the observed Kubernetes
objects as plain dicts (the JSON kube-apiserver returns: camelCase keys) and returns the status,
the sentence the user reads, and the number of ready replicas. The watcher and the periodic
resync both call it, so a status never depends on which of them saw the change.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from clusters.labels import GENERATION_ANNOTATION

BUILDING = "building"
DEPLOYING = "deploying"
RUNNING = "running"
STOPPING = "stopping"
STOPPED = "stopped"
FAILED = "failed"
DELETING = "deleting"

# Set by the reconcile and delete tasks while they hold the service: the cluster has nothing to
# say about a build in progress or a deletion the task is carrying out.
TASK_OWNED_STATUSES = frozenset({BUILDING, DELETING})

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
CRASH_REASONS = frozenset({"CrashLoopBackOff"})
# The kubelet could not even create the container: a missing secret key, a bad command path.
START_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})

# A container that crashed and was restarted less than this long ago is not trusted yet: while
# it crash-loops it is briefly "running" between back-offs, and the card must not flicker.
CRASH_SETTLE_SECONDS = 60

_QUOTA_DETAIL = re.compile(r"exceeded quota:\s*[^,]+,\s*(?P<detail>.+)$", re.DOTALL)

Obj = Mapping[str, Any]


class ObservedStatus(NamedTuple):
    status: str
    reason: str
    ready_replicas: int


def derive_status(
    *,
    current_status: str,
    current_reason: str,
    desired_state: str,
    replicas: int,
    deployment: Obj | None,
    pods: Iterable[Obj],
    events: Iterable[Obj] = (),
    now: datetime | None = None,
    generation: int | None = None,
) -> ObservedStatus:
    """The card's status from the Deployment, its Pods and its recent Warning events.

    `replicas` is what the user asked for; `desired_state` is "running" or "stopped".
    `events` are core/v1 Events about the service's Deployment, ReplicaSets and Pods.
    `now`, when given, keeps a crash-looping service `failed` through the short moments its
    container runs between two crashes (see `CRASH_SETTLE_SECONDS`).
    `generation`, when given, is the service row's: a Deployment still carrying an older one
    (the reconcile task has not applied the new spec yet) says nothing about the new revision,
    so it is not reported Running or Failed for it (an API client waits on exactly that).
    """
    pods = list(pods)
    live_pods = [pod for pod in pods if not _meta(pod).get("deletionTimestamp")]
    ready = _ready_replicas(deployment, live_pods)

    if current_status in TASK_OWNED_STATUSES:
        return ObservedStatus(current_status, current_reason, ready)

    if desired_state != RUNNING:
        if not pods:
            return ObservedStatus(STOPPED, "", 0)
        count = len(pods)
        return ObservedStatus(STOPPING, f"Stopping {count} replica{'s' if count != 1 else ''}.", ready)

    if deployment is None:
        # A failure recorded by the reconcile task (a manifest the cluster refused) stands until
        # the task or the user changes something: there is no newer observation to replace it.
        if current_status == FAILED:
            return ObservedStatus(FAILED, current_reason, 0)
        return ObservedStatus(DEPLOYING, "Waiting for the cluster to create the deployment.", 0)

    applied = _applied_generation(deployment)
    if generation is not None and applied is not None and applied < generation:
        if current_status == FAILED:
            # The task's own refusal (a manifest the cluster rejected) stands, as above.
            return ObservedStatus(FAILED, current_reason, ready)
        return ObservedStatus(DEPLOYING, "Waiting for the cluster to receive the new spec.", ready)

    if current_status == FAILED and now is not None:
        restarts = _recent_crash_restarts(live_pods, now)
        if restarts is not None:
            return ObservedStatus(FAILED, _crash_message(restarts), ready)

    if _rolled_out(deployment, replicas) and ready >= replicas:
        return ObservedStatus(RUNNING, "", ready)

    failure = _pod_failure(live_pods)
    if failure:
        return ObservedStatus(FAILED, failure, ready)

    if len(live_pods) < replicas:
        quota = _quota_failure(deployment, events)
        if quota:
            return ObservedStatus(FAILED, quota, ready)

    if _condition(deployment, "Progressing", "False", "ProgressDeadlineExceeded"):
        return ObservedStatus(
            FAILED, "The service did not become ready in time. Open the logs and the events to see why.", ready
        )

    return ObservedStatus(DEPLOYING, _progress(ready, replicas, live_pods), ready)


def _meta(obj: Obj) -> Obj:
    return obj.get("metadata") or {}


def _status(obj: Obj) -> Obj:
    return obj.get("status") or {}


def _applied_generation(deployment: Obj) -> int | None:
    """The service generation the Deployment was applied from (`services.manifests`); None
    for one without the annotation (applied by hand, or before ale wrote it)."""
    value = (_meta(deployment).get("annotations") or {}).get(GENERATION_ANNOTATION)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _pod_is_ready(pod: Obj) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True" for c in _status(pod).get("conditions") or []
    )


def _ready_replicas(deployment: Obj | None, live_pods: list[Obj]) -> int:
    if deployment is not None:
        # The Deployment's count is the controller's own; pods may lag behind the watch.
        return int(_status(deployment).get("readyReplicas") or 0)
    return sum(1 for pod in live_pods if _pod_is_ready(pod))


def _rolled_out(deployment: Obj, replicas: int) -> bool:
    """The controller has seen the newest spec and every replica runs it (no old pods left)."""
    meta, status = _meta(deployment), _status(deployment)
    spec_replicas = (deployment.get("spec") or {}).get("replicas", 1)
    if int(status.get("observedGeneration") or 0) < int(meta.get("generation") or 0):
        return False
    return (
        spec_replicas == replicas
        and int(status.get("updatedReplicas") or 0) == replicas
        and int(status.get("replicas") or 0) == replicas
    )


def _condition(obj: Obj, type_: str, status: str, reason: str | None = None) -> Obj | None:
    for condition in _status(obj).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == status:
            if reason is None or condition.get("reason") == reason:
                return condition
    return None


def _container_images(pod: Obj) -> dict[str, str]:
    spec = pod.get("spec") or {}
    containers = (spec.get("initContainers") or []) + (spec.get("containers") or [])
    return {c.get("name", ""): c.get("image", "") for c in containers}


def _pod_failure(pods: list[Obj]) -> str:
    """The sentence for the worst container problem among the pods, or "" when none has one."""
    image_pull: str | None = None
    crash_restarts: int | None = None
    start_error: str | None = None
    for pod in pods:
        images = _container_images(pod)
        status = _status(pod)
        for container in (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or []):
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in IMAGE_PULL_REASONS and image_pull is None:
                image_pull = images.get(container.get("name", "")) or container.get("image", "")
            elif reason in CRASH_REASONS:
                restarts = int(container.get("restartCount") or 0)
                crash_restarts = max(crash_restarts or 0, restarts)
            elif reason in START_REASONS and start_error is None:
                start_error = (waiting.get("message") or reason).strip()
    if image_pull is not None:
        return f"Image {image_pull} could not be pulled: it does not exist or the cluster has no access to it."
    if crash_restarts is not None:
        return _crash_message(crash_restarts)
    if start_error is not None:
        return f"The container could not start: {start_error}"
    return ""


def _crash_message(restarts: int) -> str:
    times = "1 time" if restarts == 1 else f"{restarts} times"
    return f"The container keeps crashing (restarted {times}). Open the logs to see why."


def _parse_time(value: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _recent_crash_restarts(pods: list[Obj], now: datetime) -> int | None:
    """The restart count of a container running again less than `CRASH_SETTLE_SECONDS` after
    it crashed, or None when no container is in that state."""
    found: int | None = None
    for pod in pods:
        for container in _status(pod).get("containerStatuses") or []:
            running = (container.get("state") or {}).get("running")
            crashed = (container.get("lastState") or {}).get("terminated") or {}
            started = _parse_time((running or {}).get("startedAt"))
            if not running or not crashed or crashed.get("exitCode") in (0, None) or started is None:
                continue
            if (now - started).total_seconds() < CRASH_SETTLE_SECONDS:
                found = max(found or 0, int(container.get("restartCount") or 0))
    return found


def _quota_failure(deployment: Obj, events: Iterable[Obj]) -> str:
    """The quota sentence when the cluster refused to create pods for lack of allocation.

    A real cluster reports it twice: a `ReplicaFailure` condition on the Deployment and a
    `FailedCreate` Warning on the ReplicaSet; either is enough.
    """
    messages = []
    condition = _condition(deployment, "ReplicaFailure", "True", "FailedCreate")
    if condition:
        messages.append(condition.get("message") or "")
    for event in events:
        if event.get("type") == "Warning" and event.get("reason") == "FailedCreate":
            messages.append(event.get("message") or "")
    for message in messages:
        if "exceeded quota" in message:
            match = _QUOTA_DETAIL.search(message)
            detail = f" ({match.group('detail').strip()})" if match else ""
            return (
                f"The environment's resource allocation is used up: the cluster refused to start "
                f"another replica{detail}. Stop or shrink another service, or ask for a larger allocation."
            )
    return ""


def _progress(ready: int, replicas: int, live_pods: list[Obj]) -> str:
    progress = f"{ready} of {replicas} replica{'s' if replicas != 1 else ''} ready."
    for pod in live_pods:
        unschedulable = _condition(pod, "PodScheduled", "False", "Unschedulable")
        if unschedulable:
            return f"{progress} Waiting for a node with room for it: {unschedulable.get('message', '').strip()}"
    return progress
