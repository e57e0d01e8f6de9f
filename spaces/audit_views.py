"""A space's audit log, on a page and as CSV, for its owners.

Every view is access → action → response. Outsiders get 404 everywhere; members get 403 on
what only owners may see or do (they know the space exists, so hiding it would only confuse).
"""

from __future__ import annotations

import csv

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from spaces.access import get_space_for_owner
from spaces.audit import csv_rows, filtered_entries
from spaces.http import HtmxHttpRequest
from spaces.models import AuditEntry
from spaces.sidebar import render_space_page

AUDIT_PAGE_SIZE = 100


def _audit_params(request: HtmxHttpRequest) -> dict[str, str]:
    return {key: request.GET.get(key, "").strip() for key in ("project", "environment", "user", "action")}


@require_GET
@login_required
def audit_log(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    params = _audit_params(request)
    entries = list(filtered_entries(space, params).select_related(None)[: AUDIT_PAGE_SIZE + 1])
    # The filters offer what the log holds, names included for what has been deleted since.
    base = AuditEntry.objects.filter(space=space).order_by()
    projects = sorted(set(base.exclude(project_public_id="").values_list("project_public_id", "project_name")), key=lambda p: p[1])
    # Every project has a `main`: an environment is named with its project, "shop/main".
    environments = sorted(
        (
            (public_id, f"{project_name}/{name}")
            for public_id, project_name, name in set(
                base.exclude(environment_public_id="").values_list("environment_public_id", "project_name", "environment_name")
            )
        ),
        key=lambda e: e[1],
    )
    users = sorted(set(base.exclude(actor_name="").values_list("actor_name", flat=True)))
    query = request.GET.urlencode()
    return render_space_page(
        request,
        "spaces/audit.html",
        space,
        entries=entries[:AUDIT_PAGE_SIZE],
        truncated=len(entries) > AUDIT_PAGE_SIZE,
        params=params,
        projects=projects,
        environments=environments,
        users=users,
        actions=AuditEntry.Action.choices,
        csv_url=reverse("spaces:audit-csv", args=[space.public_id]) + (f"?{query}" if query else ""),
        is_space_owner=True,
    )


class _Echo:
    """A file-like object whose write returns the line: csv.writer then yields rows one by one."""

    def write(self, value: str) -> str:
        return value


@require_GET
@login_required
def audit_csv(request: HtmxHttpRequest, space_id: str) -> StreamingHttpResponse:
    """The same filtered entries as the page, all of them, streamed a chunk at a time."""
    space = get_space_for_owner(request.user, space_id)
    writer = csv.writer(_Echo())
    rows = (writer.writerow(row) for row in csv_rows(filtered_entries(space, _audit_params(request))))
    response = StreamingHttpResponse(rows, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{space.name}.csv"'
    return response
