"""/api/v1/services: the same access helpers and actions as the service pages."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db.models import Max
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from ninja import Query, Router, Schema
from pydantic import Field

from api import access, idempotency, problems
from clusters.client import client_for
from clusters.errors import ClusterError
from api.models import ApiToken
from api.schemas import DeployedOut, ProblemOut, RevisionOut, RollbackIn, ServiceIn, ServiceOut, ServiceStatusOut, WaitOut
from environments.access import get_environment_for_user
from environments.models import Environment
from services import actions
from services.access import get_service_for_user
from services.ansi import strip_all
from services.streams.log_reader import Lines as LogLines
from services.streams.log_reader import LogOptions, LogReader
from services.streams.log_reader import Status as LogStatus
from services.streams.pipe import Pipe
from services.streams.pods import list_service_pods, short_pod_name
from services.streams.timestamps import split_stamp
from services.forms import ServiceForm, form_data_from_spec
from services.models import Service

router = Router(tags=["services"])

ERRORS = {frozenset({401, 403, 404, 422, 429}): ProblemOut}
WAIT_POLL_SECONDS = 0.5
# Numbers reach the database: beyond its integers PostgreSQL answers with an error, not a row.
MAX_INT = 2**31 - 1
# A page of the service list: a request's cost must not grow with the environment.
PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def _token(request: HttpRequest) -> ApiToken:
    return request.auth  # type: ignore[attr-defined,return-value]


def service_out(service: Service, revision: int | None) -> dict[str, Any]:
    """A service as the API shows it; `environment` with its cluster must be loaded."""
    return {
        "id": service.public_id,
        "name": service.name,
        "environment": service.environment.public_id,
        "kind": service.kind,
        "source": service.source,
        "image": service.image,
        "branch": service.branch,
        "port": service.port,
        "cpu": str(Decimal(service.cpu_millicores) / 1000),
        "memory_mib": service.memory_mib,
        "disk_mib": service.disk_mib,
        "replicas": service.replicas,
        "ready_replicas": service.ready_replicas,
        "desired_state": service.desired_state,
        "status": service.status,
        "reason": service.status_reason,
        "revision": revision,
        "addresses": {
            "access_url": service.access_url,
            "private": service.private_address,
            "external": service.external_address,
            "hosts": service.hosts,
        },
        "deployed_by": service.deployed_by.get_username() if service.deployed_by else None,
        "deployed_at": service.deployed_at,
    }


def _latest_revision(service: Service) -> int | None:
    return service.revisions.aggregate(last=Max("number"))["last"]


def _service(request: HttpRequest, service_id: str, *, write: bool, deploy_key_allowed: bool = False) -> Service:
    """token → access helper → scope: the one way every service operation finds its service."""
    token = _token(request)
    if deploy_key_allowed:
        access.check_deploy_key_service(token, service_id)
    else:
        access.check_not_deploy_key(token)
    service = get_service_for_user(token.user, service_id)
    access.check_space(token, access.service_space_id(service))
    if write:
        access.check_write(token)
    return service


def _environment(request: HttpRequest, env_id: str, *, write: bool) -> Environment:
    token = _token(request)
    access.check_not_deploy_key(token)
    environment = get_environment_for_user(token.user, env_id)
    access.check_space(token, environment.project.space_id)
    if write:
        access.check_write(token)
    return environment


def _form_data(payload: ServiceIn, service: Service | None) -> dict[str, Any]:
    """The modal's data: a change starts from the service as the edit modal shows it, a new
    service from the modal's defaults; then what the request gives."""
    if service is not None:
        data = form_data_from_spec(service.snapshot(), name=service.name)
    else:
        data = {name: field.initial for name, field in ServiceForm.base_fields.items() if field.initial is not None}
    for field, value in payload.model_dump(exclude_unset=True).items():
        data[field] = "" if value is None else value
    return data


def _deploy(request: HttpRequest, environment: Environment, payload: ServiceIn, service: Service | None) -> dict[str, Any]:
    token = _token(request)
    form = ServiceForm(_form_data(payload, service), environment=environment, service=service)
    if not form.is_valid():
        raise problems.from_form(form)
    try:
        deployed = actions.deploy_service(token.user, environment, form.cleaned_data, service=service)
    except ValidationError as error:
        raise problems.from_validation_error(error) from None
    revision = _latest_revision(deployed) or 0
    # JSON values: the answer may be stored for an Idempotency-Key.
    return DeployedOut.model_validate({"service": service_out(deployed, revision), "revision": revision}).model_dump(mode="json")


class PageQuery(Schema):
    limit: int = Field(PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    offset: int = Field(0, ge=0, le=MAX_INT)


@router.get("/environments/{env_id}/services", response={200: list[ServiceOut], **ERRORS})
def list_services(request: HttpRequest, env_id: str, page: Query[PageQuery], response: HttpResponse) -> list[dict[str, Any]]:
    """The environment's services, in the cards' order, `limit` at a time; a `Link` header
    with rel="next" names the next page when there is one."""
    environment = _environment(request, env_id, write=False)
    services = list(
        environment.services.select_related("deployed_by")
        .annotate(latest_revision=Max("revisions__number"))
        .order_by("name")[page.offset : page.offset + page.limit + 1]
    )
    if len(services) > page.limit:
        services = services[: page.limit]
        response["Link"] = f'<{request.path}?limit={page.limit}&offset={page.offset + page.limit}>; rel="next"'
    rows = []
    for service in services:
        service.environment = environment
        rows.append(service_out(service, service.latest_revision))
    return rows


@router.post("/environments/{env_id}/services", response={201: DeployedOut, **ERRORS})
def create_service(request: HttpRequest, env_id: str, payload: ServiceIn) -> Any:
    """Deploy a new service (the deploy modal). Send `Idempotency-Key` to make a retry safe."""
    environment = _environment(request, env_id, write=True)
    if not payload.name:
        raise problems.Problem(422, "name: This field is required.",
                               errors=[{"field": "name", "code": "required", "message": "This field is required."}])
    return idempotency.once(request, _token(request), 201, lambda: _deploy(request, environment, payload, None))


class WaitQuery(Schema):
    wait_for_revision: int | None = Field(None, ge=1, le=MAX_INT)
    # Bounded, and never NaN: a deadline of NaN is never reached.
    timeout: float = Field(60, ge=0, le=3600, allow_inf_nan=False)


@router.get("/services/{service_id}", response={200: ServiceStatusOut, **ERRORS})
def get_service(request: HttpRequest, service_id: str, query: Query[WaitQuery]) -> dict[str, Any]:
    """A service's spec and status. With `wait_for_revision=N`, answers once that revision is
    Running (and has stayed so for API_WAIT_SETTLE_SECONDS) or has failed (with the card's reason), or after `timeout` seconds (at most
    API_MAX_WAIT_SECONDS). It reads the database only: the watcher writes the status."""
    service = _service(request, service_id, write=False, deploy_key_allowed=True)
    wait = None
    if query.wait_for_revision is not None:
        service, wait = _wait(service, query.wait_for_revision, query.timeout)
    return {**service_out(service, _latest_revision(service)), "wait": wait}


def _settled(service: Service) -> bool:
    changed = service.status_changed_at
    return changed is None or (timezone.now() - changed).total_seconds() >= settings.API_WAIT_SETTLE_SECONDS


def _wait(service: Service, number: int, timeout: float) -> tuple[Service, dict[str, Any]]:
    if not service.revisions.filter(number=number).exists():
        raise problems.Problem(
            422, f"wait_for_revision: {service.name} has no revision {number}.",
            errors=[{"field": "wait_for_revision", "code": "invalid", "message": f"{service.name} has no revision {number}."}],
        )
    deadline = time.monotonic() + max(0.0, min(timeout, settings.API_MAX_WAIT_SECONDS))
    while True:
        latest = _latest_revision(service)
        if latest is not None and latest > number:
            return service, {"revision": number, "outcome": "superseded", "reason": f"Revision {latest} was deployed since."}
        if service.status == Service.Status.RUNNING and _settled(service):
            return service, {"revision": number, "outcome": "running", "reason": ""}
        if service.status == Service.Status.FAILED:
            return service, {"revision": number, "outcome": "failed", "reason": service.status_reason}
        if time.monotonic() >= deadline:
            return service, {"revision": number, "outcome": "timeout", "reason": service.status_reason}
        time.sleep(WAIT_POLL_SECONDS)
        try:
            service = Service.objects.select_related(
                "environment__project__space", "environment__cluster", "deployed_by"
            ).get(pk=service.pk)
        except Service.DoesNotExist:
            raise Http404("No such service.") from None


@router.post("/services/{service_id}/deploy", response={201: DeployedOut, **ERRORS})
def deploy_service(request: HttpRequest, service_id: str, payload: ServiceIn) -> Any:
    """Deploy a new revision: the fields given change, the others keep their value (a CI job
    sends `{"image": "…:sha"}`). Answers the revision number for `wait_for_revision`."""
    service = _service(request, service_id, write=True, deploy_key_allowed=True)
    if payload.name is not None and payload.name != service.name:
        raise problems.Problem(422, "name: The name of a service cannot change.",
                               errors=[{"field": "name", "code": "immutable", "message": "The name of a service cannot change."}])
    token = _token(request)
    if token.is_deploy_key:
        access.check_deploy_key_fields(payload.model_dump(exclude_unset=True))
    return idempotency.once(request, token, 201, lambda: _deploy(request, service.environment, payload, service))


def _lifecycle(request: HttpRequest, service_id: str, verb: Any) -> dict[str, Any]:
    service = _service(request, service_id, write=True)
    try:
        service = verb(_token(request).user, service)
    except ValidationError as error:
        raise problems.from_validation_error(error) from None
    return service_out(service, _latest_revision(service))


@router.post("/services/{service_id}/start", response={200: ServiceOut, **ERRORS})
def start_service(request: HttpRequest, service_id: str) -> dict[str, Any]:
    return _lifecycle(request, service_id, actions.start_service)


@router.post("/services/{service_id}/stop", response={200: ServiceOut, **ERRORS})
def stop_service(request: HttpRequest, service_id: str) -> dict[str, Any]:
    return _lifecycle(request, service_id, actions.stop_service)


@router.post("/services/{service_id}/redeploy", response={200: ServiceOut, **ERRORS})
def redeploy_service(request: HttpRequest, service_id: str) -> Any:
    """A new revision of the same spec, every pod replaced. `Idempotency-Key` makes a retry safe."""
    _service(request, service_id, write=True)

    def redeploy() -> dict[str, Any]:
        return ServiceOut.model_validate(_lifecycle(request, service_id, actions.redeploy_service)).model_dump(mode="json")

    return idempotency.once(request, _token(request), 200, redeploy)


@router.delete("/services/{service_id}", response={200: ServiceOut, **ERRORS})
def delete_service(request: HttpRequest, service_id: str) -> dict[str, Any]:
    """Marks the service as being deleted; it goes once its objects are gone from the cluster."""
    return _lifecycle(request, service_id, actions.delete_service)


@router.post("/services/{service_id}/rollback", response={201: DeployedOut, **ERRORS})
def rollback_service(request: HttpRequest, service_id: str, payload: RollbackIn) -> Any:
    service = _service(request, service_id, write=True)
    revision = service.revisions.filter(number=payload.revision).first()
    if revision is None:
        raise problems.Problem(422, f"revision: {service.name} has no revision {payload.revision}.",
                               errors=[{"field": "revision", "code": "invalid", "message": f"{service.name} has no revision {payload.revision}."}])

    def roll() -> dict[str, Any]:
        try:
            rolled = actions.rollback_service(_token(request).user, service, revision)
        except ValidationError as error:
            raise problems.from_validation_error(error) from None
        number = _latest_revision(rolled) or 0
        return DeployedOut.model_validate({"service": service_out(rolled, number), "revision": number}).model_dump(mode="json")

    return idempotency.once(request, _token(request), 201, roll)


@router.get("/services/{service_id}/revisions", response={200: list[RevisionOut], **ERRORS})
def list_revisions(request: HttpRequest, service_id: str) -> list[dict[str, Any]]:
    service = _service(request, service_id, write=False)
    return [
        {
            "number": revision.number,
            "cause": revision.cause,
            "created_at": revision.created_at,
            "created_by": revision.created_by.get_username() if revision.created_by else None,
            "image": revision.spec.get("image", ""),
            "branch": revision.spec.get("branch", ""),
        }
        for revision in service.revisions.select_related("created_by").order_by("-number")
    ]


# --- logs --------------------------------------------------------------------------------------

# What one request reads of each pod's log at most: the rest is for the Log view or a download.
LOG_LIMIT_BYTES = 4 * 1024 * 1024
MAX_TAIL = 10_000


class LogQuery(Schema):
    tail: int = Field(100, ge=1, le=MAX_TAIL)
    since: int | None = Field(None, ge=1, le=MAX_INT, description="Only lines of the last this many seconds.")
    previous: bool = False
    timestamps: bool = False
    pod: str = Field("", description="A pod name, `*` for all pods, or empty for the newest pod.")
    container: str = ""
    follow: bool = Field(False, description="Keep the answer open and send new lines until the client goes (one pod).")


LOG_RESPONSES = {
    "responses": {
        200: {"description": "The log as text, each line of all-pods mode labelled with its pod.",
                "content": {"text/plain": {"schema": {"type": "string"}}}},
    }
}


FOLLOW_PIPE_CAPACITY = 8


async def _followed(kube: Any, namespace: str, pod: Any, container: str | None, query: LogQuery) -> AsyncIterator[bytes]:
    """One pod's log, followed on the event loop by the Log view's reader (reopened after a
    restart), until the client goes: the server cancels this generator then, which stops it."""
    pipe = Pipe(asyncio.get_running_loop(), FOLLOW_PIPE_CAPACITY)
    reader = LogReader(
        kube, namespace, pod.name,
        LogOptions(container=container, tail=query.tail, previous=False, follow=True, colours=False), pipe,
    )
    reader.start()
    try:
        while True:
            item = await pipe.get()
            if isinstance(item, LogLines):
                yield "".join(
                    f"{line if query.timestamps else split_stamp(line)[1]}\n" for line in item.lines
                ).encode("utf-8")
            elif isinstance(item, LogStatus) and item.state in ("ended", "error"):
                if item.state == "error":
                    yield f"[ale: the log could not be read: {item.message}]\n".encode()
                return
    finally:
        pipe.close()
        await reader.stop()


@router.get("/services/{service_id}/logs", response={200: str, 502: ProblemOut, **ERRORS}, openapi_extra=LOG_RESPONSES)
def service_logs(request: HttpRequest, service_id: str, query: Query[LogQuery]) -> HttpResponse:
    """The last `tail` lines of the service's log, colours removed; with `follow=true`, new lines
    as they come (chunked text, one pod) until the client closes the connection."""
    service = _service(request, service_id, write=False)
    if query.follow and query.pod == "*":
        raise problems.Problem(422, "follow: Follow one pod at a time (the Log view follows all of them).",
                               errors=[{"field": "follow", "code": "invalid", "message": "Follow one pod at a time (the Log view follows all of them)."}])
    try:
        kube = client_for(service.environment.cluster)
        pods = list_service_pods(kube, service)
        if query.pod == "*":
            chosen = pods
        elif query.pod:
            chosen = [pod for pod in pods if pod.name == query.pod]
            if not chosen:
                raise problems.Problem(422, f"pod: {service.name} has no pod {query.pod}.",
                                       errors=[{"field": "pod", "code": "invalid", "message": f"{service.name} has no pod {query.pod}."}])
        else:
            chosen = pods[-1:]
        if query.follow and chosen:
            pod = chosen[0]
            container = query.container if query.container in pod.containers else (pod.containers or ("",))[0]
            followed = StreamingHttpResponse(
                _followed(kube, service.namespace, pod, container or None, query), content_type="text/plain; charset=utf-8"
            )
            followed["X-Content-Type-Options"] = "nosniff"
            followed["Cache-Control"] = "no-store"
            return followed
        parts = []
        for pod in chosen:
            container = query.container if query.container in pod.containers else (pod.containers or ("",))[0]
            stream = kube.open_log_stream(
                service.namespace, pod.name, container=container or None, follow=False, tail_lines=query.tail,
                since_seconds=query.since, timestamps=query.timestamps, previous=query.previous, limit_bytes=LOG_LIMIT_BYTES,
            )
            try:
                text = b"".join(stream.iter_chunks()).decode("utf-8", errors="replace")
            finally:
                stream.close()
            label = f"[{short_pod_name(pod.name)}] " if query.pod == "*" else ""
            parts.extend(f"{label}{line}\n" for line in strip_all(text).splitlines())
    except ClusterError as error:
        raise problems.Problem(502, error.user_message) from None
    response = HttpResponse("".join(parts), content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    return response
