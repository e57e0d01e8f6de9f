"""The webhook endpoint Git hosts post to, and the owners' settings of the hook and previews."""

from __future__ import annotations

from functools import partial

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_POST

from hooks import actions, limits
from environments.access import get_environment_for_user
from hooks.access import get_environment_for_owner
from hooks.forms import HostTokenForm, PreviewSettingsForm
from hooks.models import ProjectHook
from hooks.tasks import process_delivery
from spaces.access import is_owner
from spaces.http import HtmxHttpRequest, wants_fragment


def _plain(text: str, status: int) -> HttpResponse:
    return HttpResponse(f"{text}\n", status=status, content_type="text/plain; charset=utf-8")


@csrf_exempt
@require_POST
def receive(request: HtmxHttpRequest, hook_id: str) -> HttpResponse:
    """Accept a delivery for the task and answer at once. An unknown hook, a bad signature,
    an event ale ignores and a replay all get the same answer as a good delivery."""
    if not limits.allow(hook_id):
        return _plain("Too many deliveries to this hook; try again in a minute.", 429)
    cap = settings.WEBHOOK_MAX_BODY_BYTES
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    if declared > cap:
        return _plain(f"The body is larger than {cap} bytes.", 413)
    body = request.read(cap + 1)
    if len(body) > cap:
        return _plain(f"The body is larger than {cap} bytes.", 413)
    headers = {name.lower(): value for name, value in request.headers.items()}
    delivery = actions.accept_delivery(hook_id, headers, body)
    if delivery is not None:
        # robust: the delivery is stored either way; should the broker be down, the Git host's
        # "Redeliver" enqueues it again (see accept_delivery).
        transaction.on_commit(partial(_enqueue, delivery.pk), robust=True)
    return _plain("Accepted.", 202)


def _enqueue(delivery_id: int) -> None:
    process_delivery.delay(delivery_id)


@require_GET
@login_required
def section(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    """The webhook section of the Settings tab (loaded into it), or a page of its own."""
    environment = get_environment_for_user(request.user, env_id)
    project = environment.project
    hook = ProjectHook.objects.filter(project=project).select_related("preview_base").first()
    owner = is_owner(request.user, project.space)
    context = {
        "environment": environment,
        "hook": hook,
        "is_owner": owner,
        "hook_url": hook_url(request, hook) if hook else "",
        # The secret is decrypted for owners only: a member's page never carries it.
        "hook_secret": hook.secret if hook and owner else "",
        "preview_form": PreviewSettingsForm(hook=hook, project=project) if owner else None,
        "token_form": HostTokenForm(initial={"api_url": hook.host_api_url if hook else ""}) if owner else None,
        "has_token": bool(hook and hook.host_token_encrypted),
    }
    template = "hooks/_settings.html" if wants_fragment(request) else "hooks/section.html"
    return render(request, template, context)


def _back(request: HtmxHttpRequest, env_id: str, message: str) -> HttpResponse:
    messages.success(request, message)
    return redirect("environments:settings", env_id=env_id)


@require_POST
@login_required
def rotate(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_owner(request.user, env_id)
    actions.rotate_secret(acting_user=request.user, project=environment.project)
    return _back(request, env_id, "New webhook secret: update it at your Git host.")


@require_POST
@login_required
def previews(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_owner(request.user, env_id)
    project = environment.project
    form = PreviewSettingsForm(request.POST, hook=None, project=project)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, error if field == "__all__" else f"{form.fields[field].label}: {error}")
        return redirect("environments:settings", env_id=env_id)
    data = form.cleaned_data
    actions.set_preview_settings(
        acting_user=request.user, project=project, enabled=data["enabled"], base=data["base"],
        with_secrets=data["with_secrets"], allow_forks=data["allow_forks"],
    )  # fmt: skip
    return _back(request, env_id, "Preview settings saved.")


@sensitive_post_parameters("token")
@require_POST
@login_required
def host_token(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_owner(request.user, env_id)
    form = HostTokenForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, f"{form.fields[field].label}: {error}")
        return redirect("environments:settings", env_id=env_id)
    token = form.cleaned_data["token"]
    actions.set_host_token(
        acting_user=request.user, project=environment.project, token=token, api_url=form.cleaned_data["api_url"]
    )
    return _back(request, env_id, "Git host token saved." if token else "Git host token removed.")


def hook_url(request: HtmxHttpRequest, hook: ProjectHook) -> str:
    return request.build_absolute_uri(reverse("hooks:receive", args=[hook.public_id]))
