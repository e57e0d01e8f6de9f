"""Compare with… and Promote A → B, from an environment's Settings tab."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from environments.access import environments_for_user, get_environment_for_user
from environments.yaml_document import DocumentError
from environments.models import Environment
from environments.promote import PromoteChanged, preview, promote
from spaces.http import HtmxHttpRequest


def _pair(request: HtmxHttpRequest, env_id: str, other_id: str) -> tuple[Environment, Environment]:
    """Both environments, visible to the user and of one project; 404 otherwise."""
    source = get_environment_for_user(request.user, env_id)
    target = get_environment_for_user(request.user, other_id)
    if target.project_id != source.project_id or target.pk == source.pk:
        raise Http404("No such environment.")
    return source, target


@require_GET
@login_required
def page(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    others = list(
        environments_for_user(request.user).filter(project=environment.project).exclude(pk=environment.pk).order_by("name")
    )
    context = {"environment": environment, "project": environment.project, "others": others, "target": None}
    other_id = request.GET.get("with", "")
    if other_id:
        source, target = _pair(request, env_id, other_id)
        context.update(target=target, preview=preview(source, target))
    return render(request, "environments/compare.html", context)


@require_POST
@login_required
def promote_view(request: HtmxHttpRequest, env_id: str, other_id: str) -> HttpResponse:
    source, target = _pair(request, env_id, other_id)
    back = f"{reverse('compare:page', args=[source.public_id])}?with={target.public_id}"
    try:
        result = promote(
            request.user, source, target, digest=request.POST.get("digest", ""),
            confirm_firewall=request.POST.get("confirm_firewall") == "on",
        )  # fmt: skip
    except PromoteChanged as exc:
        messages.error(request, str(exc))
        return redirect(back)
    except (DocumentError, ValidationError) as exc:
        messages.error(request, f"Nothing was promoted: {' '.join(exc.messages)}")
        return redirect(back)
    if result.change_count:
        messages.success(
            request,
            f"Promoted {source.name} to {target.name}: {len(result.created)} created, {len(result.changed)} changed, "
            f"{len(result.unchanged)} unchanged.",
        )
    else:
        messages.info(request, f"{target.name} already matches {source.name}: nothing to promote.")
    return redirect("environments:detail", env_id=target.public_id)
