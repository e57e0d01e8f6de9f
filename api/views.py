"""The API tokens page (user menu) and the deploy keys of the service page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from api import actions
from api.forms import DeployKeyForm, TokenForm
from api.models import ApiToken
from services.access import get_service_for_user
from spaces.http import HtmxHttpRequest
from spaces.sidebar import sidebar_context


# The new token rides in the session from the POST to the page after its redirect, and is
# taken out when shown: a reload neither creates a second token nor shows the first again.
NEW_TOKEN_KEY = "api_new_token"


def _take_new_token(request: HtmxHttpRequest) -> str:
    return request.session.pop(NEW_TOKEN_KEY, "")


def _tokens_page(request: HtmxHttpRequest, form: TokenForm, *, new_token: str = "", status: int = 200) -> HttpResponse:
    tokens = (
        ApiToken.objects.filter(user=request.user, revoked_at__isnull=True)
        .select_related("service__environment__project")
        .prefetch_related("spaces")
    )
    context = {"form": form, "tokens": tokens, "new_token": new_token, **sidebar_context(request.user)}
    return render(request, "api/tokens.html", context, status=status)


@require_http_methods(["GET", "POST"])
@login_required
def tokens(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _tokens_page(request, TokenForm(user=request.user), new_token=_take_new_token(request))
    form = TokenForm(request.POST, user=request.user)
    if not form.is_valid():
        return _tokens_page(request, form, status=422)
    _, raw = actions.create_token(
        request.user,
        name=form.cleaned_data["name"],
        permission=form.cleaned_data["permission"],
        spaces=None if form.cleaned_data["all_spaces"] else form.cleaned_data["spaces"],
        expires_in_days=form.cleaned_data["expires_in_days"],
    )
    request.session[NEW_TOKEN_KEY] = raw
    return redirect("api:tokens")


@require_POST
@login_required
def revoke(request: HtmxHttpRequest, token_id: str) -> HttpResponse:
    token = ApiToken.objects.filter(user=request.user, public_id=token_id).first()
    if token is None:
        raise Http404("No such token.")
    actions.revoke_token(token)
    messages.success(request, f"Revoked {token.name}.")
    return redirect("api:tokens")


@require_http_methods(["GET", "POST"])
@login_required
def deploy_key(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    """A deploy key for one service: any member of its space may make one."""
    service = get_service_for_user(request.user, service_id)
    form = DeployKeyForm(request.POST or None, initial={"expires_in_days": 90})
    space = service.environment.project.space
    context = {"service": service, "environment": service.environment, "form": form, "space": space,
               **sidebar_context(request.user, space)}
    if request.method == "POST":
        if not form.is_valid():
            return render(request, "api/deploy_key.html", context, status=422)
        _, raw = actions.create_deploy_key(
            request.user, service, name=form.cleaned_data["name"], expires_in_days=form.cleaned_data["expires_in_days"]
        )
        request.session[NEW_TOKEN_KEY] = raw
        return redirect("api:deploy-key", service_id=service.public_id)
    context["new_token"] = _take_new_token(request)
    return render(request, "api/deploy_key.html", context)
