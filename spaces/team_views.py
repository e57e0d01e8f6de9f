"""The space's own pages: settings, team, audit log, usage, and the invitation link.

Every view is access → action → response. Outsiders get 404 everywhere; members get 403 on
what only owners may see or do (they know the space exists, so hiding it would only confuse).
"""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from services.metrics import measured_for_space
from spaces import actions, invitations
from spaces.access import get_space_for_owner, get_space_for_user, is_owner
from spaces.allocation import format_cpu, format_mib, meters
from spaces.audit import csv_rows, filtered_entries
from spaces.forms import InviteForm, RoleForm, SignupForm, SpaceDeleteForm, SpaceRenameForm
from spaces.http import HtmxHttpRequest, wants_fragment
from spaces.models import AuditEntry, Invitation, Membership, ResourceAllocation, Space
from spaces.resources import limits_for_space, usage_for_space
from spaces.sidebar import sidebar_context


def _page(request: HtmxHttpRequest, template: str, space: Space, **context: Any) -> HttpResponse:
    return render(
        request,
        template,
        {
            "space": space,
            **sidebar_context(request.user, space),
            **context,
        },
    )


# --- settings ------------------------------------------------------------------------------------


def _settings_page(
    request: HtmxHttpRequest,
    space: Space,
    *,
    rename_form: SpaceRenameForm | None = None,
    delete_form: SpaceDeleteForm | None = None,
    status: int = 200,
) -> HttpResponse:
    allocation = ResourceAllocation.objects.select_related("profile").filter(space=space).first()
    limits = limits_for_space(space)
    response = _page(
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
    return _settings_page(request, space)


@require_POST
@login_required
def space_rename(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    form = SpaceRenameForm(request.POST, space=space)
    if not form.is_valid():
        return _settings_page(request, space, rename_form=form, status=422)
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
        return _settings_page(request, space, delete_form=form, status=422)
    name = space.name
    actions.delete_space(acting_user=request.user, space=space)
    messages.success(request, f"Deleting {name}… its namespaces are being removed.")
    return redirect("home")


# --- team ----------------------------------------------------------------------------------------


def _team_page(
    request: HtmxHttpRequest, space: Space, *, invite_form: InviteForm | None = None, status: int = 200
) -> HttpResponse:
    memberships = list(space.memberships.select_related("user").order_by("role", "user__username"))
    owner = any(m.user_id == request.user.pk and m.role == Membership.Role.OWNER for m in memberships)
    pending = []
    if owner:
        pending = [i for i in space.invitations.select_related("invited_by").order_by("-created_at") if i.is_pending]
    response = _page(
        request,
        "spaces/team.html",
        space,
        memberships=memberships,
        owner_count=sum(1 for m in memberships if m.role == Membership.Role.OWNER),
        is_space_owner=owner,
        invite_form=invite_form or InviteForm(),
        # Owners only (members get no pending list at all): the link lets anyone join.
        pending=[
            (i, invitations.reference(i), invitations.link_for(i, request.build_absolute_uri("/"))) for i in pending
        ],
        roles=Membership.Role.choices,
    )
    response.status_code = status
    return response


@require_GET
@login_required
def team(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    """Everyone in the space sees who is in it; only owners see the forms that change it."""
    space = get_space_for_user(request.user, space_id)
    return _team_page(request, space)


@require_POST
@login_required
def invite(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _team_page(request, space, invite_form=form, status=422)
    try:
        result = invitations.invite(
            acting_user=request.user,
            space=space,
            who=form.cleaned_data["who"],
            role=form.cleaned_data["role"],
            base_url=request.build_absolute_uri("/"),
        )
    except ValidationError as error:
        form.add_error("who", error)
        return _team_page(request, space, invite_form=form, status=422)
    if result.membership is not None:
        messages.success(request, f"{result.membership.user.get_username()} is now in {space.name}.")
    else:
        messages.success(request, f"Invitation sent to {form.cleaned_data['who']}.")
    return redirect("spaces:team", space_id=space.public_id)


def _member_user(space: Space, username: str):  # type: ignore[no-untyped-def]
    user = get_user_model().objects.filter(username=username, memberships__space=space).first()
    if user is None:
        raise Http404("No such member.")
    return user


@require_POST
@login_required
def change_role(request: HtmxHttpRequest, space_id: str, username: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    user = _member_user(space, username)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose owner or member.")
        return _team_page(request, space, status=422)
    try:
        actions.change_role(acting_user=request.user, space=space, user=user, role=form.cleaned_data["role"])
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return _team_page(request, space, status=422)
    messages.success(request, f"{username} is now {form.cleaned_data['role']}.")
    if not is_owner(request.user, space):
        # An owner who made themselves a member can no longer manage the team.
        return redirect("spaces:detail", space_id=space.public_id)
    return redirect("spaces:team", space_id=space.public_id)


@require_POST
@login_required
def remove_member(request: HtmxHttpRequest, space_id: str, username: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    user = _member_user(space, username)
    try:
        actions.remove_member(acting_user=request.user, space=space, user=user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return _team_page(request, space, status=422)
    if user.pk == request.user.pk:
        messages.success(request, f"You left {space.name}.")
        return redirect("home")
    messages.success(request, f"{username} is no longer in {space.name}.")
    return redirect("spaces:team", space_id=space.public_id)


@require_POST
@login_required
def leave(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_user(request.user, space_id)
    try:
        actions.remove_member(acting_user=request.user, space=space, user=request.user)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return _team_page(request, space, status=422)
    messages.success(request, f"You left {space.name}.")
    return redirect("home")


@require_POST
@login_required
def revoke_invitation(request: HtmxHttpRequest, space_id: str, ref: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    invitation = get_object_or_404(Invitation, space=space, token_hash__startswith=ref, accepted_at__isnull=True)
    invitations.revoke(acting_user=request.user, invitation=invitation)
    messages.success(request, f"The invitation for {invitation.email} is revoked.")
    return redirect("spaces:team", space_id=space.public_id)


# --- the invitation link -------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def invitation(request: HtmxHttpRequest, token: str) -> HttpResponse:
    """Signed in: an Accept button. Signed out: a signup form with the e-mail filled in, and a
    way to sign in first for someone who already has an account."""
    found = invitations.find(token)
    if found is None:
        return render(request, "spaces/invitation.html", {"invalid": True}, status=404)
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                invitations.accept(token=token, user=request.user)
            except ValidationError as error:
                return render(request, "spaces/invitation.html", {"invalid": True, "errors": error.messages}, status=409)
            messages.success(request, f"You joined {found.space.name}.")
            return redirect("spaces:detail", space_id=found.space.public_id)
        return render(request, "spaces/invitation.html", {"invitation": found})

    form = SignupForm(request.POST or None, initial={"email": found.email})
    if request.method == "POST" and form.is_valid():
        try:
            user = invitations.sign_up_and_accept(
                token=token,
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
            )
        except ValidationError as error:
            return render(request, "spaces/invitation.html", {"invalid": True, "errors": error.messages}, status=409)
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        messages.success(request, f"Welcome to {found.space.name}.")
        return redirect("spaces:detail", space_id=found.space.public_id)
    login_url = f"{reverse('login')}?next={request.path}"
    return render(
        request, "spaces/invitation.html", {"invitation": found, "form": form, "login_url": login_url},
        status=422 if request.method == "POST" else 200,
    )


# --- audit log -----------------------------------------------------------------------------------

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
    return _page(
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


# --- usage panel ---------------------------------------------------------------------------------


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
    return _page(request, "spaces/usage.html", space, **context)
