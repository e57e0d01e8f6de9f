"""A space's members: the Team page, invitations, roles, leaving, and the invitation link.

Every view is access → action → response. Outsiders get 404 everywhere; members get 403 on
what only owners may see or do (they know the space exists, so hiding it would only confuse).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from spaces import actions, invitations
from spaces.access import get_space_for_owner, get_space_for_user, is_owner
from spaces.forms import InviteForm, RoleForm, SignupForm
from spaces.http import HtmxHttpRequest
from spaces.models import Invitation, Membership, Space
from spaces.sidebar import render_space_page


def _teamrender_space_page(
    request: HtmxHttpRequest, space: Space, *, invite_form: InviteForm | None = None, status: int = 200
) -> HttpResponse:
    memberships = list(space.memberships.select_related("user").order_by("role", "user__username"))
    owner = any(m.user_id == request.user.pk and m.role == Membership.Role.OWNER for m in memberships)
    pending = []
    if owner:
        pending = [i for i in space.invitations.select_related("invited_by").order_by("-created_at") if i.is_pending]
    response = render_space_page(
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
    return _teamrender_space_page(request, space)


@require_POST
@login_required
def invite(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_owner(request.user, space_id)
    form = InviteForm(request.POST)
    if not form.is_valid():
        return _teamrender_space_page(request, space, invite_form=form, status=422)
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
        return _teamrender_space_page(request, space, invite_form=form, status=422)
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
        return _teamrender_space_page(request, space, status=422)
    try:
        actions.change_role(acting_user=request.user, space=space, user=user, role=form.cleaned_data["role"])
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        return _teamrender_space_page(request, space, status=422)
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
        return _teamrender_space_page(request, space, status=422)
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
        return _teamrender_space_page(request, space, status=422)
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
