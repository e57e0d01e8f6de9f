"""What base.html's sidebar lists: the user's spaces and, on a page inside a space, its projects.

Every page that renders base.html builds the sidebar here, so that what it lists and how it is
queried are decided once.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from spaces.access import live_projects, spaces_for_user
from spaces.models import Project, Space


def sidebar_context(
    user: AbstractBaseUser | AnonymousUser, space: Space | None = None, *, projects: QuerySet[Project] | None = None
) -> dict[str, Any]:
    """`user_spaces`, and `space_projects` when the page is inside `space`.

    A page that lists the space's projects itself passes its queryset as `projects`: the
    sidebar then reuses the list instead of querying again.
    """
    context: dict[str, Any] = {"user_spaces": spaces_for_user(user)}
    if space is not None:
        context["space_projects"] = projects if projects is not None else live_projects(space)
    return context


def render_space_page(request: HttpRequest, template: str, space: Space, **context: Any) -> HttpResponse:
    """A page of the space itself (settings, team, audit log, usage), with the sidebar."""
    return render(request, template, {"space": space, **sidebar_context(request.user, space), **context})
