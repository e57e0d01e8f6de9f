"""Deploying and running services: the deploy modal, the card's buttons, the service page.

Every view is access → action → response. POST actions answer htmx with the updated card (the
card's buttons target `#service-<public id>` with an outerHTML swap; Start All and Stop All with
the progress banner, their cards coming over the socket) and plain forms with a redirect, so
each button works without JavaScript too. No view talks to Kubernetes: the
actions write the desired state and a Celery task applies it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from environments.access import get_environment_for_user
from environments.models import Environment
from hooks.actions import set_deploy_on_push
from services import actions, charts, guards, metrics, progress
from services.access import get_service_for_user, may_open_terminal
from services.forms import ServiceForm
from services.manifests import DATA_MOUNT_PATH
from services.models import Build, Service
from spaces.allocation import CAPACITY_LABELS, CPU, MEMORY, format_cpu, format_mib
from spaces.http import HtmxHttpRequest, wants_fragment
from spaces.resources import limits_for_space
from spaces.sidebar import sidebar_context

# The modal sits in pages that have forms of their own (the selector's "Create new
# environment" has a `name` too): its own id prefix keeps every label on its field.
FORM_IDS = "deploy-%s"

NO_METRICS_API = (
    "This service's cluster has no metrics API (metrics-server is not installed), so ale cannot show its CPU "
    "and memory."
)

# Sent with a successful modal submit: static/js/services.js closes the open dialog on it.
# After the swap: a dialog closed before it leaves the answer's form detached, and htmx then
# looks for the answer's out-of-band flash message inside the closed dialog, not the page.
CLOSE_MODAL_TRIGGER = "ale:modal-close"
CLOSE_MODAL_HEADER = "HX-Trigger-After-Swap"


# --- responses ---------------------------------------------------------------------------------


def _page_context(request: HtmxHttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """`context` (which holds the environment) with what base.html's sidebar needs."""
    project = context["environment"].project
    return {
        "project": project,
        "space": project.space,
        **sidebar_context(request.user, project.space),
        **context,
    }


def _messages_oob(request: HtmxHttpRequest) -> str:
    return render_to_string("_messages.html", {"oob": True}, request=request)


def _back(request: HtmxHttpRequest, service: Service) -> HttpResponse:
    """Without JavaScript: back to the page the form was on (the service page or the
    environment), never to another site."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect("environments:detail", env_id=service.environment.public_id)


def _card_response(request: HtmxHttpRequest, service: Service, *, close_modal: bool = False) -> HttpResponse:
    if not wants_fragment(request):
        return _back(request, service)
    guards.note_missing_secrets([service])
    html = render_to_string("services/_card.html", {"service": service}, request=request)
    response = HttpResponse(html + _messages_oob(request))
    if close_modal:
        response[CLOSE_MODAL_HEADER] = CLOSE_MODAL_TRIGGER
    return response


def _flash_refusal(request: HtmxHttpRequest, error: ValidationError) -> None:
    """The refusal's sentences as error messages; secrets come with a link to where they are set."""
    if isinstance(error, guards.MissingSecrets):
        settings_url = reverse("environments:settings", args=[error.environment_public_id]) + "#secrets"
        messages.error(
            request,
            format_html('{} <a href="{}" data-set-secrets>Set secrets</a>', error.messages[0], settings_url),
        )
        return
    for message in error.messages:
        messages.error(request, message)


def _refused(request: HtmxHttpRequest, service: Service, error: ValidationError) -> HttpResponse:
    """An action refused by its rules (the service or its environment is being deleted, the
    allocation, a secret it reads is missing)."""
    _flash_refusal(request, error)
    return _card_response(request, service)


def _form_response(
    request: HtmxHttpRequest, environment: Environment, form: ServiceForm, service: Service | None, *, status: int = 200
) -> HttpResponse:
    context = {"environment": environment, "form": form, "service": service}
    if wants_fragment(request):
        # 200 even with errors: htmx swaps no 4xx response by default, and the form with its
        # errors is what must show.
        return render(request, "services/_deploy_modal.html", context)
    return render(request, "services/deploy.html", _page_context(request, context), status=status)


# --- deploy and edit ---------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
def deploy(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    """The deploy modal: a new service in the environment."""
    environment = get_environment_for_user(request.user, env_id)
    if request.method == "GET":
        return _form_response(request, environment, ServiceForm(environment=environment, auto_id=FORM_IDS), None)

    form = ServiceForm(request.POST, environment=environment, auto_id=FORM_IDS)
    if not form.is_valid():
        return _form_response(request, environment, form, None, status=422)
    try:
        service = actions.deploy_service(request.user, environment, form.cleaned_data)
        set_deploy_on_push(service, form.cleaned_data["deploy_on_push"])
    except ValidationError as error:
        form.add_error(None, error)
        return _form_response(request, environment, form, None, status=422)
    if not wants_fragment(request):
        messages.success(request, f"Deploying {service.name}.")
        return redirect("environments:detail", env_id=environment.public_id)
    # The new card goes at the end of the grid (the live socket may bring it first: the
    # script keeps one card per id).
    response = _card_response(request, service, close_modal=True)
    response["HX-Retarget"] = "#service-grid"
    response["HX-Reswap"] = "beforeend"
    return response


@require_http_methods(["GET", "POST"])
@login_required
def edit(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    """The deploy modal pre-filled from a service: submitting it deploys a new revision."""
    service = get_service_for_user(request.user, service_id)
    environment = service.environment
    if request.method == "GET":
        return _form_response(request, environment, ServiceForm(environment=environment, service=service, auto_id=FORM_IDS), service)

    form = ServiceForm(request.POST, environment=environment, service=service, auto_id=FORM_IDS)
    if not form.is_valid():
        return _form_response(request, environment, form, service, status=422)
    try:
        service = actions.deploy_service(request.user, environment, form.cleaned_data, service=service)
        set_deploy_on_push(service, form.cleaned_data["deploy_on_push"])
    except ValidationError as error:
        form.add_error(None, error)
        return _form_response(request, environment, form, service, status=422)
    if not wants_fragment(request):
        messages.success(request, f"Deploying a new revision of {service.name}.")
        return _back(request, service)
    response = _card_response(request, service, close_modal=True)
    response["HX-Retarget"] = f"#service-{service.public_id}"
    response["HX-Reswap"] = "outerHTML"
    return response


# --- the card's buttons ------------------------------------------------------------------------


@require_POST
@login_required
def start(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    service = get_service_for_user(request.user, service_id)
    try:
        service = actions.start_service(request.user, service)
    except ValidationError as error:
        return _refused(request, service, error)
    return _card_response(request, service)


@require_POST
@login_required
def stop(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    service = get_service_for_user(request.user, service_id)
    try:
        service = actions.stop_service(request.user, service)
    except ValidationError as error:
        return _refused(request, service, error)
    return _card_response(request, service)


@require_POST
@login_required
def redeploy(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    service = get_service_for_user(request.user, service_id)
    try:
        service = actions.redeploy_service(request.user, service)
    except ValidationError as error:
        return _refused(request, service, error)
    return _card_response(request, service)


@require_http_methods(["GET", "POST"])
@login_required
def delete(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    """GET asks for confirmation (a modal, or a page without JavaScript); POST deletes."""
    service = get_service_for_user(request.user, service_id)
    if request.method == "GET":
        context = {"service": service, "environment": service.environment}
        if wants_fragment(request):
            return render(request, "services/_delete_modal.html", context)
        return render(request, "services/delete.html", _page_context(request, context))
    try:
        service = actions.delete_service(request.user, service)
    except ValidationError as error:
        return _refused(request, service, error)
    if not wants_fragment(request):
        messages.success(request, f"Deleting {service.name}.")
        # The service page is going away with the service: back to its environment.
        return redirect("environments:detail", env_id=service.environment.public_id)
    response = _card_response(request, service, close_modal=True)
    response["HX-Retarget"] = f"#service-{service.public_id}"
    response["HX-Reswap"] = "outerHTML"
    return response


def _bulk_response(request: HtmxHttpRequest, environment: Environment) -> HttpResponse:
    """Start All's and Stop All's answer once the intent is saved: the progress banner and the
    message, out of band. The cards follow over the page's socket as the environment's task
    takes them (rendering hundreds here is what kept the request waiting)."""
    if not wants_fragment(request):
        return redirect("environments:detail", env_id=environment.public_id)
    environment.refresh_from_db(fields=["bulk_action", "bulk_service_ids", "bulk_started_at"])
    return HttpResponse(progress.render_for(environment, oob=True) + _messages_oob(request))


def _bulk(request: HtmxHttpRequest, env_id: str, verb, doing: str, none_left: str) -> HttpResponse:
    """Start All or Stop All (`verb`, from `services.actions`): the message says how many go,
    or that none were left to go; the answer is `_bulk_response`."""
    environment = get_environment_for_user(request.user, env_id)
    try:
        count = verb(request.user, environment)
    except ValidationError as error:
        _flash_refusal(request, error)
    else:
        if count:
            messages.success(request, f"{doing} {count} service{'s' if count != 1 else ''}.")
        else:
            messages.info(request, none_left)
    return _bulk_response(request, environment)


@require_POST
@login_required
def start_all(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    """The selector's "Start All": every stopped service of the environment runs again."""
    return _bulk(request, env_id, actions.start_all, "Starting", "No stopped services to start.")


@require_POST
@login_required
def stop_all(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    """The selector's "Stop All": every running service of the environment scales to zero."""
    return _bulk(request, env_id, actions.stop_all, "Stopping", "No running services to stop.")


# --- the service page --------------------------------------------------------------------------


@require_GET
@login_required
def detail(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    service = get_service_for_user(request.user, service_id)
    revisions = list(service.revisions.select_related("created_by").order_by("-number"))
    context = _page_context(
        request,
        {
            "environment": service.environment,
            "service": service,
            "revisions": revisions,
            "current_number": revisions[0].number if revisions else None,
            # The last builds of a Git service (an image service may keep some from before).
            "builds": list(service.builds.select_related("created_by")[: Build.KEEP]),
            "cpu": Decimal(service.cpu_millicores) / 1000,
            "memory": format_mib(service.memory_mib),
            "disk_path": DATA_MOUNT_PATH,
            # The Terminal link only for those the environment's setting lets in.
            "may_open_terminal": may_open_terminal(request.user, service.environment),
            "right_size": _right_size(service),
        },
    )
    return render(request, "services/detail.html", context)


def _right_size(service: Service) -> dict[str, str] | None:
    """The suggestion of a smaller size, in the words the page shows, or None."""
    suggestion = metrics.right_size(service)
    if suggestion is None:
        return None
    limits = limits_for_space(service.environment.project.space)
    capacity = service.capacity
    return {
        "used": f"{charts.format_cpu(suggestion.p95_cpu_cores)} and {charts.format_memory(suggestion.p95_memory_bytes)}",
        "size": f"{format_cpu(suggestion.cpu_millicores)} and {format_mib(suggestion.memory_mib)}",
        "frees": f"{format_cpu(suggestion.frees_cpu_millicores)} and {format_mib(suggestion.frees_memory_mib)}",
        "of": f"{format_cpu(limits.total(capacity, CPU))} and {format_mib(limits.total(capacity, MEMORY))} "
        f"{CAPACITY_LABELS[capacity].lower()}",
    }


@require_http_methods(["GET", "POST"])
@login_required
def rollback(request: HtmxHttpRequest, service_id: str, number: int) -> HttpResponse:
    """GET asks for confirmation, naming the revision and its image (a modal, or a page
    without JavaScript); POST rolls back."""
    service = get_service_for_user(request.user, service_id)
    revision = get_object_or_404(service.revisions.select_related("created_by"), number=number)
    if request.method == "GET":
        context = {"service": service, "environment": service.environment, "revision": revision}
        if wants_fragment(request):
            return render(request, "services/_rollback_modal.html", context)
        return render(request, "services/rollback.html", _page_context(request, context))
    try:
        service = actions.rollback_service(request.user, service, revision)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
    else:
        messages.success(request, f"Rolling {service.name} back to revision {number}.")
    # The revisions list changed too: the whole page again (htmx follows the redirect).
    return redirect("services:detail", service_id=service.public_id)


@require_GET
@login_required
def metrics_tab(request: HtmxHttpRequest, service_id: str) -> HttpResponse:
    """The Metrics tab: CPU and memory charts drawn on the server. Its charts element polls this
    view while the tab is open and gets back just that element."""
    service = get_service_for_user(request.user, service_id)
    range_key = request.GET.get("range", metrics.DEFAULT_RANGE)
    if range_key not in metrics.RANGES:
        return HttpResponse(
            f"Unknown range {range_key!r}: choose one of {', '.join(metrics.RANGES)}.",
            status=400,
            content_type="text/plain",
        )
    per_pod = request.GET.get("pods") == "1"
    unavailable = metrics.metrics_unavailable(service.environment.cluster_id)
    context = _page_context(
        request,
        {
            "environment": service.environment,
            "service": service,
            "ranges": list(metrics.RANGES),
            "range": range_key,
            "per_pod": per_pod,
            "no_metrics_api": NO_METRICS_API if unavailable else "",
            "charts": [] if unavailable else metrics.service_charts(service, range_key, per_pod=per_pod),
            "poll_seconds": settings.METRICS_INTERVAL_SECONDS,
        },
    )
    template = "services/_metrics_charts.html" if wants_fragment(request) else "services/metrics.html"
    return render(request, template, context)
