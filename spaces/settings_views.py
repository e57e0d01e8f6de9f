"""A space's settings (rename, delete, its allocation) and its usage panel.

Every view is access → action → response. Outsiders get 404 everywhere; members get 403 on
what only owners may see or do (they know the space exists, so hiding it would only confuse).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from services.metrics import measured_for_space
from spaces import actions
from spaces.access import get_space_for_owner, get_space_for_user, is_owner
from spaces.allocation import format_cpu, format_mib, meters
from spaces.forms import SpaceDeleteForm, SpaceRenameForm
from spaces.http import HtmxHttpRequest, wants_fragment
from spaces.models import ResourceAllocation, Space
from spaces.resources import limits_for_space, usage_for_space
from spaces.sidebar import render_space_page


def _settingsrender_space_page(
    request: HtmxHttpRequest,
    space: Space,
    *,
    rename_form: SpaceRenameForm | None = None,
    delete_form: SpaceDeleteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    allocation = ResourceAllocation.objects.select_related("profile").filter(space=space).first()
    limits = limits_for_space(space)
    response = render_space_page(
        request,
        "spaces/settings.html",
        space,
        rename_form=rename_form or SpaceRenameForm(initial={"name": space.name}, space=space),
        delete_form=delete_form or SpaceDeleteForm(space=space),
        profile_name=allocation.profile.name if allocation and allocation.profile else "default",
        has_overrides=bool(allocation) and any(
            getattr(allocation, name) is not None for name in limits.field_names()
        ),
        groups=meters(limits, usage_for_space(space)),
        per_service=(
            f"at most {format_cpu(limits.service_max_cpu_millicores)} and {format_mib(limits.service_max_memory_mib)} "
            f"memory per replica, {format_mib(limits.service_max_disk_mib)} disk per service; "
            f"at most {limits.max_replicas_per_service} replicas"
        ),
        is_space_owner=True,
    )
    response.status_code = status
    return response


@require_GET
@login_required
def space_settings(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    return _settingsrender_space_page(request, space)


@require_POST
@login_required
def space_rename(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    form = SpaceRenameForm(request.POST, space=space)
    if not form.is_valid():
        return _settingsrender_space_page(request, space, rename_form=form, status=422)
    actions.rename_space(acting_user=request.user, space=space, name=form.cleaned_data["name"])
    messages.success(request, f"The space is now called {form.cleaned_data['name']}.")
    return redirect("spaces:settings", space_id=space.public_id)


@require_POST
@login_required
def space_delete(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    form = SpaceDeleteForm(request.POST, space=space)
    if space.is_default:
        form.add_error(None, "This is a default space: it stays as long as its user does.")
    if not form.is_valid():
        return _settingsrender_space_page(request, space, delete_form=form, status=422)
    name = space.name
    actions.delete_space(acting_user=request.user, space=space)
    messages.success(request, f"Deleting {name}… its namespaces are being removed.")
    return redirect("home")


@require_GET
@login_required
def usage(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    """Used against allocated. The sidebar loads it after the page and refreshes it (see
    `spaces/_usage.html`), so no page pays for it in its own queries."""
    space = get_space_for_user(request.user, space_id)
    context = {
        "groups": meters(limits_for_space(space), usage_for_space(space), measured_for_space(space.pk)),
        "is_space_owner": is_owner(request.user, space),
    }
    if wants_fragment(request):
        return render(request, "spaces/_usage.html", {"space": space, **context})
    return render_space_page(request, "spaces/usage.html", space, **context)
