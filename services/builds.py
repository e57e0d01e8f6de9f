"""Builds of Git services: their names and images, reading the outcome of a build Job, and
finding a build for the log viewer.

A deploy of a Git service does not touch its Deployment: `services.lifecycle.start_build`
records a `Build`, sets the service `building` and enqueues `services.tasks.run_build`, which
applies the Job. The watcher notices the Job finish and enqueues `services.tasks.finish_build`,
which reads the build log and hands the result to `services.lifecycle.finish_build`: on success
the service points at the new image and is reconciled. A newer deploy cancels the build in
progress (its Job is deleted), so only the newest one can move the service.
"""

from __future__ import annotations

import re
from typing import Any

from clusters.labels import selector_for_build
from services.ansi import strip_all
from services.models import Build, Service
from services.streams.pods import pod_info

# kaniko's Job names: the service name, shortened so that `-build-<id>` fits a DNS label.
_JOB_NAME_SERVICE_MAX = 63 - len("-build-") - 12
# The lines a failure shows on the card and in the history.
REASON_LINES = 10
REASON_MAX_CHARS = 2000
# The git step of a builder prints the commit it checked out; ale cannot ask the remote itself.
_COMMIT_RE = re.compile(r"HEAD is now at ([0-9a-f]{7,40})\b")


def job_name_for(service: Service, build_public_id: str) -> str:
    return f"{service.name[:_JOB_NAME_SERVICE_MAX].rstrip('-')}-build-{build_public_id}"


def image_for(service: Service, number: int, build_public_id: str) -> str:
    """`<registry>/<environment id>/<service>:b<number>-<build id>`.

    Not the commit: the branch head is only known once the builder has cloned it, and the
    destination is an argument of the builder. The build row records the commit when the
    builder reports one.
    """
    registry = service.environment.cluster.registry.rstrip("/")
    return f"{registry}/{service.environment.public_id}/{service.name}:b{number}-{build_public_id}"


def job_outcome(job: dict[str, Any]) -> str | None:
    """"succeeded", "failed" or None (still running), from a Job's conditions."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "succeeded"
        if condition.get("type") == "Failed":
            return "failed"
    return None


def job_failure_message(job: dict[str, Any]) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            if condition.get("reason") == "DeadlineExceeded":
                return "The build ran longer than the cluster's build deadline and was stopped."
            return condition.get("message") or ""
    return ""


def last_lines(log: str, count: int = REASON_LINES) -> str:
    """The last non-blank lines of a build log, without colours: what the card shows."""
    lines = [strip_all(line).rstrip() for line in log.splitlines()]
    lines = [line for line in lines if line.strip()]
    text = "\n".join(lines[-count:])
    return text[-REASON_MAX_CHARS:]


def commit_from_log(log: str) -> str:
    match = _COMMIT_RE.search(log)
    return match.group(1) if match else ""


def latest_builds(service: Service) -> list[Build]:
    return list(service.builds.select_related("created_by")[: Build.KEEP])


def build_for(service: Service, wanted: str | None) -> Build | None:
    """The build the log viewer asks for: "latest" or a build number of this service.

    None when nothing is asked (running logs); `Build.DoesNotExist` when the service has no
    such build, which the page and the socket turn into the same refusal as a missing service.
    """
    wanted = (wanted or "").strip()
    if not wanted:
        return None
    builds = service.builds.all()
    if wanted == "latest":
        build = builds.order_by("-number").first()
        if build is None:
            raise Build.DoesNotExist("This service has no builds.")
        return build
    if not wanted.isdigit() or len(wanted) > 9:
        raise Build.DoesNotExist("Not a build number.")
    return builds.get(number=int(wanted))


def list_build_pods(kube: Any, service: Service, build: Build) -> list[Any]:
    """The pod(s) of one build's Job, oldest first, as the log viewer lists pods. Selected by the
    build's label in the service's namespace: the browser names a build number, never a pod
    outside it."""
    items, _ = kube.list("v1", "Pod", namespace=service.namespace, label_selector=selector_for_build(build.public_id))
    pods = [pod_info(item) for item in items if not (item.get("metadata") or {}).get("deletionTimestamp")]
    return sorted(pods, key=lambda pod: (pod.created, pod.name))
