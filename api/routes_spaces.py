"""/api/v1/spaces, projects, environments and the audit log: the pages' access helpers."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Query, Router

from api import access
from api.models import ApiToken
from api.schemas import AuditEntryOut, ProblemOut, ProjectOut, SpaceOut
from spaces import audit
from spaces.access import get_project_for_user, get_space_for_owner, get_space_for_user, spaces_for_user
from spaces.models import Membership

router = Router(tags=["spaces"])

ERRORS = {frozenset({401, 403, 404, 422, 429}): ProblemOut}
AUDIT_PAGE = 100


def _token(request: HttpRequest) -> ApiToken:
    token = request.auth  # type: ignore[attr-defined]
    access.check_not_deploy_key(token)
    return token


@router.get("/spaces", response={200: list[SpaceOut], **ERRORS})
def list_spaces(request: HttpRequest) -> list[dict[str, Any]]:
    """The spaces the token reaches: its user's, narrowed to the token's scope."""
    token = _token(request)
    scope = access.space_ids_in_scope(token)
    roles = dict(Membership.objects.filter(user=token.user).values_list("space_id", "role"))
    spaces = spaces_for_user(token.user)
    if scope is not None:
        spaces = spaces.filter(pk__in=scope)
    return [
        {"id": space.public_id, "name": space.name, "is_default": space.is_default, "role": roles.get(space.pk, "")}
        for space in spaces
    ]


@router.get("/spaces/{space_id}", response={200: SpaceOut, **ERRORS})
def get_space(request: HttpRequest, space_id: str) -> dict[str, Any]:
    token = _token(request)
    space = get_space_for_user(token.user, space_id)
    access.check_space(token, space.pk)
    role = Membership.objects.filter(user=token.user, space=space).values_list("role", flat=True).first() or ""
    return {"id": space.public_id, "name": space.name, "is_default": space.is_default, "role": role}


@router.get("/spaces/{space_id}/projects", response={200: list[ProjectOut], **ERRORS})
def list_projects(request: HttpRequest, space_id: str) -> list[dict[str, Any]]:
    token = _token(request)
    space = get_space_for_user(token.user, space_id)
    access.check_space(token, space.pk)
    return [
        {"id": p.public_id, "name": p.name, "display_name": p.display_name, "space": space.public_id,
         "handle": f"@{space.name}/{p.name}"}
        for p in space.projects.order_by("name")
    ]


@router.get("/projects/{project_id}", response={200: ProjectOut, **ERRORS})
def get_project(request: HttpRequest, project_id: str) -> dict[str, Any]:
    token = _token(request)
    project = get_project_for_user(token.user, project_id)
    access.check_space(token, project.space_id)
    space = project.space
    return {"id": project.public_id, "name": project.name, "display_name": project.display_name,
            "space": space.public_id, "handle": project.handle}


@router.get("/spaces/{space_id}/audit", response={200: list[AuditEntryOut], **ERRORS})
def audit_log(request: HttpRequest, space_id: str, offset: int = Query(0, ge=0, le=2**31 - 1)) -> list[dict[str, Any]]:
    """The space's audit log, newest first, 100 entries at a time from `offset` (owners only)."""
    token = _token(request)
    space = get_space_for_owner(token.user, space_id)
    access.check_space(token, space.pk)
    entries = audit.filtered_entries(space, {})
    return [
        {"time": e.created_at, "user": e.actor_name, "action": e.action, "project": e.project_name,
         "environment": e.environment_name, "service": e.service_name, "summary": e.summary,
         "token": e.details.get("token")}
        for e in entries[offset : offset + AUDIT_PAGE]
    ]
