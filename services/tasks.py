"""Celery tasks that carry a service's desired state to its cluster.

A task takes an id and re-reads the row: it always applies the service as it is now, so a
task that runs late, twice, or after a newer one leaves the same cluster state. Transient
cluster errors retry with capped exponential backoff and full jitter; a permanent error, or
the last failed retry, sets the service to `failed` with a reason its user can act on. Tasks
write no state themselves but the digests of what they applied (`services.apply`, which skips
what is unchanged): they re-read the row, talk to the cluster and hand what it said to
`services.lifecycle` (a failure for the generation they applied, a build's end); the watcher
turns a service `running` or `stopped` when the cluster says so.

`reconcile_service` is a person's click and goes first; `reconcile_services` applies a chunk of
an environment's services in threads, as bulk work (`services.queue`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.models import QuerySet

from clusters.client import KubeClient, client_for
from clusters.errors import ClusterError
from clusters.labels import BUILD_LABEL, selector_for_build, selector_for_service
from environments.manifests import render_environment
from environments.models import Environment
from services import apply, builds, lifecycle, queue
from services.manifests import JOB, MANAGED_KINDS, render_build_job, tls_secret_name
from services.models import Build, Service

logger = logging.getLogger(__name__)

MAX_RETRIES = 8
RETRY_BASE_SECONDS = 1
RETRY_MAX_SECONDS = 60


def retry_delay(retries: int, retry_after: float | None = None) -> int:
    """Seconds before retry number `retries + 1`: full jitter over 1, 2, 4... s capped at a
    minute, and never sooner than the server's Retry-After."""
    delay = get_exponential_backoff_interval(RETRY_BASE_SECONDS, retries, RETRY_MAX_SECONDS, full_jitter=True)
    if retry_after:
        delay = max(delay, min(math.ceil(retry_after), RETRY_MAX_SECONDS))
    return delay


def retry_or_give_up(task: Task, exc: ClusterError, what: str, give_up: Callable[[str], None]) -> None:
    """Retry `task` if `exc` is transient and attempts remain (raises `Retry`), else call
    `give_up` with the sentence to show the user."""
    attempt = task.request.retries + 1
    if exc.retryable and task.request.retries < task.max_retries:
        delay = retry_delay(task.request.retries, exc.retry_after)
        logger.warning("%s: attempt %d failed, retrying in %d s: %s", what, attempt, delay, exc)
        raise task.retry(exc=exc, countdown=delay)
    logger.error(
        "%s: attempt %d failed, giving up (%s): %s",
        what,
        attempt,
        "retries exhausted" if exc.retryable else "permanent",
        exc,
    )
    give_up(exc.user_message)


def _remove(kube, service: Service) -> None:
    # From the first delete on, the digests no longer say what the cluster holds.
    apply.forget_service(service)
    for api_version, kind in MANAGED_KINDS:
        kube.delete(api_version, kind, service.name, service.namespace)
    # The certificate cert-manager kept for its Ingress: cert-manager deletes the Certificate
    # with the Ingress, not the Secret it wrote.
    kube.delete("v1", "Secret", tls_secret_name(service), service.namespace)
    # Its build Jobs, with their pods and logs.
    jobs, _ = kube.list(*JOB, namespace=service.namespace, label_selector=f"{selector_for_service(service.public_id)},{BUILD_LABEL}")
    for job in jobs:
        kube.delete(*JOB, job["metadata"]["name"], service.namespace)


def _service_rows(**filters) -> QuerySet[Service]:
    return Service.objects.select_related("environment__project__space", "environment__cluster").filter(**filters)


def _skip_reason(service: Service) -> str | None:
    """Why a service is not applied now, or None: what every reconcile checks first."""
    if service.environment.is_deleting:
        # The namespace goes with everything in it; recreating objects would only slow that.
        return "environment deleting"
    if service.status == Service.Status.BUILDING:
        # The build's end reconciles it, with the new image.
        return "building"
    return None


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def reconcile_service(self: Task, service_id: int, generation: int | None = None, force: bool = False) -> str:
    """Make the cluster match the service: apply what changed of its objects (and of its
    environment's), scale, or delete it.

    `generation` is the one the enqueuing action wrote; it is only logged, because the task
    always applies the current one. `force` applies every object whatever was applied before
    (the resync's repair of a service whose objects went missing).
    """
    service = _service_rows(pk=service_id).first()
    if service is None:
        logger.info("reconcile_service %s: the service is gone", service_id)
        return "gone"
    environment = service.environment
    what = f"reconcile_service {service.pk} ({environment.namespace}/{service.name}) generation {service.generation}"
    logger.info("%s: attempt %d (enqueued for generation %s)", what, self.request.retries + 1, generation)
    skip = _skip_reason(service)
    if skip:
        return skip
    deleting = service.status == Service.Status.DELETING
    if service.is_git and not service.image and not deleting:
        return _build_first(service)
    try:
        kube = client_for(environment.cluster)
        if deleting:
            _remove(kube, service)
        else:
            salt = apply.cluster_salt(environment.cluster)
            apply.apply_environment(kube, environment, salt=salt, force=force)
            hashes = apply.apply_service(kube, service, salt=salt, force=force)
    except ClusterError as exc:
        prefix = "Could not delete the service: " if deleting else ""
        retry_or_give_up(self, exc, what, lambda reason: lifecycle.mark_failed(service, service.generation, prefix + reason))
        return "failed"
    if deleting:
        with transaction.atomic():
            lifecycle.finish_delete(service)
        logger.info("%s: deleted", what)
        return "deleted"
    if not apply.record_applied(service, hashes):
        logger.info("%s: a newer generation was written meanwhile; reconciling again", what)
        queue.send(queue.RECONCILE_SERVICE, service.pk)
    return "applied"


# How many services one `reconcile_services` applies at once: enough to keep a cluster's API
# server busy, few enough to stay polite to it (the client's pool holds KUBE_POOL_SIZE); a
# divisor of the chunk sizes (`environments.tasks`), so that no round of a chunk runs half empty.
APPLY_THREADS = 10


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True)
def reconcile_services(
    self: Task,
    environment_id: int,
    service_ids: list[int],
    workloads_only: bool = False,
    environment_applied: str | None = None,
) -> dict[str, int]:
    """Reconcile a chunk of one environment's services together: the environment's objects once
    (nothing, when unchanged), then the services' objects, `APPLY_THREADS` at a time.

    `environment_applied`: `apply.applied_token` of the batch's `reconcile_environment`, which
    applied the environment's objects; while it holds, the chunk neither reads nor renders them
    again (a batch of 300 services is 60 chunks).

    The same rules and failures as `reconcile_service`, per service: a permanent error marks
    that service failed; a transient one hands that service to its own `reconcile_service`,
    which retries it with backoff; services being deleted are handed over the same way. The
    chunk itself is never retried: what it applied stays applied.

    `workloads_only`: the first pass of a big batch (`environments.tasks`), which starts the
    pods of services ready to apply (`apply.WORKLOAD_KINDS`) and leaves the rest, failures
    included, to the full pass that follows it in the queue.
    """
    services = list(_service_rows(pk__in=service_ids, environment_id=environment_id).order_by("pk"))
    outcome: dict[str, int] = {}

    def count(key: str) -> None:
        outcome[key] = outcome.get(key, 0) + 1

    if not services:
        return outcome
    environment = services[0].environment
    what = f"reconcile_services ({environment.namespace}, {len(services)} services)"
    if workloads_only:
        return _start_workloads(environment, services, what, environment_applied)
    to_apply: list[Service] = []
    for service in services:
        skip = _skip_reason(service)
        if skip:
            count(skip)
        elif service.status == Service.Status.DELETING:
            queue.send(queue.RECONCILE_SERVICE, service.pk, service.generation, bulk=True)
            count("handed over")
        elif service.is_git and not service.image:
            count(_build_first(service))
        else:
            to_apply.append(service)
    if not to_apply:
        return outcome
    try:
        kube, salt = _environment_applied(environment, environment_applied)
    except ClusterError as exc:
        # The environment has no status of its own: each service's reconcile shows it.
        logger.warning("%s: the environment's objects failed (%s); each service on its own", what, exc)
        for service in to_apply:
            queue.send(queue.RECONCILE_SERVICE, service.pk, service.generation, bulk=True)
            count("handed over")
        return outcome

    results = _apply_in_threads(kube, to_apply, salt=salt)
    applied = [(service, result) for service, result in zip(to_apply, results) if not isinstance(result, ClusterError)]
    for service in apply.record_applied_many(applied):
        # A newer generation was written meanwhile: its digests are forgotten, it goes again.
        queue.send(queue.RECONCILE_SERVICE, service.pk, bulk=True)
    for service, result in zip(to_apply, results):
        if not isinstance(result, ClusterError):
            count("applied")
        elif result.retryable:
            logger.warning("%s: service %s failed, retrying on its own: %s", what, service.pk, result)
            queue.send(
                queue.RECONCILE_SERVICE, service.pk, service.generation, countdown=retry_delay(0, result.retry_after), bulk=True
            )
            count("retrying")
        else:
            logger.error("%s: service %s failed (permanent): %s", what, service.pk, result)
            lifecycle.mark_failed(service, service.generation, result.user_message)
            count("failed")
    logger.info("%s: %s", what, outcome)
    return outcome


def _environment_applied(environment: Environment, token: str | None = None) -> tuple[KubeClient, str]:
    """The client and digest salt of the environment's cluster, once the environment's own
    objects are applied (nothing, when unchanged; not even looked at while `token`, from the
    batch's reconcile that applied them, holds). Raises `ClusterError`."""
    kube = client_for(environment.cluster)
    salt = apply.cluster_salt(environment.cluster)
    if token is None or token != apply.applied_token(environment, salt):
        apply.apply_environment(kube, environment, salt=salt)
    return kube, salt


def _apply_in_threads(
    kube: KubeClient, services: list[Service], *, salt: str, workloads_only: bool = False
) -> list[dict[str, str] | ClusterError]:
    """`apply.apply_service` for each service, `APPLY_THREADS` at a time: the digests to record,
    or the `ClusterError` it raised, in the services' order. The threads talk to the cluster
    only; the caller writes every row, on its own thread's connection."""

    def apply_one(service: Service) -> dict[str, str] | ClusterError:
        try:
            return apply.apply_service(kube, service, salt=salt, workloads_only=workloads_only)
        except ClusterError as exc:
            return exc
        finally:
            # The rows come loaded; should anything still query, its connection ends with it.
            connections.close_all()

    with ThreadPoolExecutor(max_workers=APPLY_THREADS, thread_name_prefix="apply") as pool:
        return list(pool.map(apply_one, services))


def _start_workloads(
    environment: Environment, services: list[Service], what: str, environment_applied: str | None
) -> dict[str, int]:
    """The first pass of a big batch: the workloads of the services ready to apply, their
    digests recorded (so that the full pass skips them); anything else is the full pass's."""
    ready = [
        service
        for service in services
        if not _skip_reason(service)
        and service.status != Service.Status.DELETING
        and not (service.is_git and not service.image)
    ]
    outcome = {"workloads started": 0}
    if not ready:
        return outcome
    try:
        kube, salt = _environment_applied(environment, environment_applied)
    except ClusterError as exc:
        logger.info("%s: the environment's objects failed (%s); left to the full pass", what, exc)
        return outcome

    results = _apply_in_threads(kube, ready, salt=salt, workloads_only=True)
    applied = [(service, result) for service, result in zip(ready, results) if not isinstance(result, ClusterError)]
    stale = apply.record_applied_many(applied)
    outcome["workloads started"] = len(applied) - len(stale)
    for service, result in zip(ready, results):
        if isinstance(result, ClusterError):
            logger.info("%s: service %s's workload failed (%s); left to the full pass", what, service.pk, result)
    logger.info("%s (workloads): %s", what, outcome)
    return outcome


def _build_first(service: Service) -> str:
    """A Git service asked to run with no image yet builds first (`lifecycle.build_first`)."""
    with transaction.atomic():
        try:
            service = lifecycle.lock(service)
        except ValidationError:
            return "deleting"
        return lifecycle.build_first(service)


# --- builds --------------------------------------------------------------------------------------

# How much of a build log is read for its result: the commit is near the top, the error at the
# end; a log larger than this keeps its last part.
BUILD_LOG_MAX_BYTES = 2 * 1024 * 1024


def _build_row(build_id: int) -> Build | None:
    return (
        Build.objects.select_related("service__environment__project__space", "service__environment__cluster")
        .filter(pk=build_id)
        .first()
    )


def _fail_build(build: Build, reason: str) -> None:
    with transaction.atomic():
        lifecycle.fail_build(build, reason)


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def run_build(self: Task, build_id: int) -> str:
    """Apply the build's Job (and its namespace); the watcher follows it from there."""
    build = _build_row(build_id)
    if build is None:
        return "gone"
    if not build.is_active:
        return build.status
    service = build.service
    environment = service.environment
    what = f"run_build {build.pk} ({environment.namespace}/{build.job_name})"
    if service.git_token_secret and not environment.variables.filter(key=service.git_token_secret).exists():
        # Not refused by the form: a YAML file or a clone brings the name before its value.
        # Without it the build pod could not start and would wait until the build deadline.
        _fail_build(
            build,
            f"The environment has no secret {service.git_token_secret} for the repository's token: "
            "add it under Settings → Secret Management, then redeploy.",
        )
        return "failed"
    try:
        kube = client_for(environment.cluster)
        kube.apply(render_environment(environment) + [render_build_job(build)])
    except ClusterError as exc:
        retry_or_give_up(self, exc, what, lambda reason: _fail_build(build, reason))
        return "failed"
    if not lifecycle.mark_build_running(build):
        # Cancelled while the Job was being applied: the cancellation's delete may have run
        # before the Job existed, so delete it again.
        kube.delete(*JOB, build.job_name, environment.namespace)
        return "cancelled"
    logger.info("%s: Job applied", what)
    prune_builds(kube, service)
    return "building"


def prune_builds(kube, service: Service) -> None:
    """Keep the last `Build.KEEP` builds of the service; older ones go with their Jobs."""
    old = list(service.builds.order_by("-number")[Build.KEEP :].values_list("pk", "job_name"))
    for _, job_name in old:
        kube.delete(*JOB, job_name, service.namespace)
    Build.objects.filter(pk__in=[pk for pk, _ in old]).delete()


def _read_build_log(kube, namespace: str, build: Build) -> str:
    pods, _ = kube.list("v1", "Pod", namespace=namespace, label_selector=selector_for_build(build.public_id))
    if not pods:
        return ""
    pods.sort(key=lambda pod: (pod.get("metadata") or {}).get("creationTimestamp") or "")
    name = pods[-1]["metadata"]["name"]
    data = bytearray()
    with kube.open_log_stream(namespace, name, follow=False) as stream:
        for chunk in stream.iter_chunks():
            data += chunk
            if len(data) > 2 * BUILD_LOG_MAX_BYTES:
                del data[: len(data) - BUILD_LOG_MAX_BYTES]
    return bytes(data[-BUILD_LOG_MAX_BYTES:]).decode("utf-8", "replace")


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def finish_build(self: Task, build_id: int) -> str:
    """Record the end of a build whose Job finished (or vanished), read from the cluster: the
    last log lines of a failure, the commit the builder reports; then move the service on."""
    build = _build_row(build_id)
    if build is None:
        return "gone"
    if not build.is_active:
        return build.status
    namespace = build.service.environment.namespace
    what = f"finish_build {build.pk} ({namespace}/{build.job_name})"
    try:
        kube = client_for(build.service.environment.cluster)
        job = kube.get(*JOB, build.job_name, namespace)
        outcome = builds.job_outcome(job) if job is not None else "failed"
        if outcome is None:
            return "running"
        log = _read_build_log(kube, namespace, build) if job is not None else ""
    except ClusterError as exc:
        retry_or_give_up(self, exc, what, lambda reason: _fail_build(build, f"Could not read the build's result: {reason}"))
        return "failed"
    if job is None:
        reason = "The build's Job was deleted before it finished."
    else:
        reason = builds.last_lines(log) or builds.job_failure_message(job) or "The build failed."
    with transaction.atomic():
        status = lifecycle.finish_build(
            build, succeeded=outcome == "succeeded", reason=reason, commit=builds.commit_from_log(log)
        )
    logger.info("%s: %s", what, status)
    return status


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def delete_build_job(self: Task, build_id: int) -> str:
    """Delete the Job (and its pod) of a cancelled build."""
    build = _build_row(build_id)
    if build is None:
        return "gone"
    environment = build.service.environment
    try:
        client_for(environment.cluster).delete(*JOB, build.job_name, environment.namespace, propagation="Background")
    except ClusterError as exc:
        retry_or_give_up(self, exc, f"delete_build_job {build.pk}", lambda reason: None)
        return "failed"
    return "deleted"
