"""/api/v1/ environments: create (empty or a clone), set default, delete, the environment's
YAML document, its variables and secrets, and its events. The pages' forms, access helpers
and actions, each called as the page calls it."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.http import HttpRequest
from ninja import Router, Status

from api import access, idempotency, problems
from api.models import ApiToken
from api.schemas import (
    EnvironmentIn,
    EnvironmentOut,
    EventOut,
    ProblemOut,
    VariableIn,
    VariableOut,
    VariableSetOut,
    YamlAppliedOut,
    YamlIn,
    YamlOut,
    YamlPlanOut,
)
from clusters.models import Cluster
from environments import actions
from environments.access import environments_for_user, get_environment_for_user
from environments.forms import EnvironmentCreateForm, VariableForm
from environments.yaml_document import (
    MAX_BYTES,
    DocumentError,
    apply_document,
    export_yaml,
    parse_document,
    plan,
    preview_refusals,
)
from environments.models import ClusterEvent, Environment
from spaces.access import get_project_for_user

router = Router(tags=["environments"])

ERRORS = {frozenset({401, 403, 404, 422, 429}): ProblemOut}
EVENTS_LIMIT = 200


def _token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    access.check_not_deploy_key(token)
    return token


def _environment(request: HttpRequest, env_id: str, *, write: bool) -> Environment:
    token = _token(request)
    environment = get_environment_for_user(token.user, env_id)
    access.check_space(token, environment.project.space_id)
    if write:
        access.check_write(token)
    return environment


def environment_out(environment: Environment) -> dict[str, Any]:
    project = environment.project
    return {
        "id": environment.public_id,
        "name": environment.name,
        "project": project.public_id,
        "cluster": environment.cluster.name,
        "namespace": environment.namespace,
        "is_default": project.default_environment_id == environment.pk,
        "color": environment.color,
        "allow_external_tcp": environment.allow_external_tcp,
    }


@router.get("/projects/{project_id}/environments", response={200: list[EnvironmentOut], **ERRORS})
def list_environments(request: HttpRequest, project_id: str) -> list[dict[str, Any]]:
    token = _token(request)
    project = get_project_for_user(token.user, project_id)
    access.check_space(token, project.space_id)
    environments = environments_for_user(token.user).filter(project=project).select_related("cluster")
    rows = []
    for environment in environments:
        environment.project = project
        rows.append(environment_out(environment))
    return rows


@router.get("/environments/{env_id}", response={200: EnvironmentOut, **ERRORS})
def get_environment(request: HttpRequest, env_id: str) -> dict[str, Any]:
    token = _token(request)
    environment = get_environment_for_user(token.user, env_id)
    access.check_space(token, environment.project.space_id)
    return environment_out(environment)


@router.post("/projects/{project_id}/environments", response={201: EnvironmentOut, **ERRORS})
def create_environment(request: HttpRequest, project_id: str, payload: EnvironmentIn) -> Any:
    """A new environment, empty or (with `source`) a clone; the selector's rules and messages."""
    token = _token(request)
    project = get_project_for_user(token.user, project_id)
    access.check_space(token, project.space_id)
    access.check_write(token)

    def create() -> dict[str, Any]:
        # Validated inside: a retry with the same key is answered before the name is "taken".
        # PostgreSQL refuses a NUL in a query; no cluster name has one.
        cluster = Cluster.objects.filter(name=payload.cluster).first() if "\x00" not in payload.cluster else None
        form = EnvironmentCreateForm(
            {
                "mode": EnvironmentCreateForm.CLONE if payload.source else EnvironmentCreateForm.EMPTY,
                "source": payload.source or "",
                "name": payload.name,
                # An unknown cluster name reaches the form as is, which refuses it in its words.
                "cluster": cluster.pk if cluster is not None else payload.cluster,
            },
            project=project,
        )
        if not form.is_valid():
            raise problems.from_form(form)
        data = form.cleaned_data
        try:
            if data["source"] is not None:
                environment = actions.clone_environment(
                    acting_user=token.user, source=data["source"], name=data["name"], cluster=data["cluster"]
                )
            else:
                environment = actions.create_environment(
                    acting_user=token.user, project=project, name=data["name"], cluster=data["cluster"]
                )
        except ValidationError as error:
            raise problems.from_validation_error(error) from None
        environment.project = project
        return EnvironmentOut.model_validate(environment_out(environment)).model_dump(mode="json")

    return idempotency.once(request, token, 201, create)


@router.post("/environments/{env_id}/default", response={200: EnvironmentOut, **ERRORS})
def set_default(request: HttpRequest, env_id: str) -> dict[str, Any]:
    environment = _environment(request, env_id, write=True)
    actions.set_default_environment(acting_user=_token(request).user, environment=environment)
    return environment_out(environment)


@router.delete("/environments/{env_id}", response={204: None, **ERRORS})
def delete_environment(request: HttpRequest, env_id: str) -> Any:
    """Deletes the environment, its services and its namespace (and the project with its last
    environment)."""
    environment = _environment(request, env_id, write=True)
    actions.delete_environment(acting_user=_token(request).user, environment=environment)
    return Status(204, None)


# --- the YAML document -------------------------------------------------------------------------


@router.get("/environments/{env_id}/yaml", response={200: YamlOut, **ERRORS})
def get_yaml(request: HttpRequest, env_id: str) -> dict[str, Any]:
    """The environment as the YAML file the page downloads."""
    return {"yaml": export_yaml(_environment(request, env_id, write=False))}


def _parse(environment: Environment, payload: YamlIn) -> Any:
    data = payload.yaml.encode()
    if len(data) > MAX_BYTES:
        raise problems.Problem(
            413, f"The file is larger than 1 MiB ({len(data):,} bytes); an ale file is much smaller.",
        )
    try:
        return parse_document(data, environment)
    except DocumentError as error:
        raise problems.Problem(
            422, " ".join(error.messages),
            errors=[{"field": "yaml", "code": "invalid", "message": message} for message in error.messages],
        ) from None


@router.post("/environments/{env_id}/yaml/preview", response={200: YamlPlanOut, 413: ProblemOut, **ERRORS})
def preview_yaml(request: HttpRequest, env_id: str, payload: YamlIn) -> dict[str, Any]:
    """What applying the file would do: the page's create/change/unchanged plan and refusals."""
    environment = _environment(request, env_id, write=False)
    the_plan = plan(environment, _parse(environment, payload))
    return {
        "services": [
            {"name": item.name, "action": item.action,
             "changes": [{"field": c.field, "old": c.old, "new": c.new} for c in item.changes]}
            for item in the_plan.services
        ],
        "untouched": list(the_plan.untouched),
        "missing_secrets": list(the_plan.missing_secrets),
        "opens_firewall": the_plan.opens_firewall,
        # What Apply would refuse (names, disks, the allocation, missing secrets), as the page shows it.
        "blocked": preview_refusals(environment, the_plan),
    }


@router.post("/environments/{env_id}/yaml/apply", response={200: YamlAppliedOut, 413: ProblemOut, **ERRORS})
def apply_yaml(request: HttpRequest, env_id: str, payload: YamlIn) -> dict[str, Any]:
    """Apply the file: all of it or, on any refusal, nothing. Opening the firewall needs
    `confirm_firewall`, as on the page."""
    environment = _environment(request, env_id, write=True)
    document = _parse(environment, payload)
    try:
        result = apply_document(_token(request).user, environment, document, confirm_firewall=payload.confirm_firewall)
    except ValidationError as error:
        raise problems.from_validation_error(error) from None
    return {"created": result.created, "changed": result.changed, "unchanged": result.unchanged,
            "firewall_changed": result.firewall_changed}


# --- variables and secrets ---------------------------------------------------------------------


@router.get("/environments/{env_id}/variables", response={200: list[VariableOut], **ERRORS})
def list_variables(request: HttpRequest, env_id: str) -> list[dict[str, Any]]:
    """Every key; the values of plain variables; never a secret's value."""
    environment = _environment(request, env_id, write=False)
    return [
        {"key": v.key, "is_secret": v.is_secret, "value": None if v.is_secret else v.value, "updated_at": v.updated_at}
        for v in environment.variables.order_by("key")
    ]


@router.put("/environments/{env_id}/variables/{key}", response={200: VariableSetOut, **ERRORS})
def set_variable(request: HttpRequest, env_id: str, key: str, payload: VariableIn) -> dict[str, Any]:
    """Add or replace one variable or secret (a secret stays one). Services read it when they
    are next deployed or restarted, as with the page."""
    environment = _environment(request, env_id, write=True)
    form = VariableForm({"key": key, "value": payload.value, "is_secret": payload.is_secret})
    if not form.is_valid():
        raise problems.from_form(form)
    created, _ = actions.set_variables(
        acting_user=_token(request).user, environment=environment,
        values={form.cleaned_data["key"]: form.cleaned_data["value"]}, is_secret=form.cleaned_data["is_secret"],
    )
    return {"key": key, "created": bool(created)}


@router.delete("/environments/{env_id}/variables/{key}", response={204: None, **ERRORS})
def delete_variable(request: HttpRequest, env_id: str, key: str) -> Any:
    environment = _environment(request, env_id, write=True)
    if not actions.delete_variable(acting_user=_token(request).user, environment=environment, key=key):
        raise problems.Problem(404, "There is no such variable.")
    return Status(204, None)


# --- events ------------------------------------------------------------------------------------


@router.get("/environments/{env_id}/events", response={200: list[EventOut], **ERRORS})
def list_events(request: HttpRequest, env_id: str) -> list[dict[str, Any]]:
    """The Events tab: the newest 200, with the service each is about."""
    environment = _environment(request, env_id, write=False)
    return [
        {"type": e.type, "reason": e.reason, "message": e.message, "object": f"{e.involved_kind}/{e.involved_name}",
         "service": e.service.public_id if e.service else None, "count": e.count, "last_seen": e.last_seen}
        for e in ClusterEvent.objects.recent(environment, EVENTS_LIMIT)
    ]
