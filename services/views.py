"""Deploying and running services: the deploy modal, the card's buttons, the service page.

Every view is access → action → response. POST actions answer htmx with the updated card (the
card's buttons target `#service-<public id>` with an outerHTML swap) and plain forms with a
redirect, so each button works without JavaScript too. No view talks to Kubernetes: the
actions write the desired state and a Celery task applies it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from environments.access import get_environment_for_user
from environments.models import Environment
from hooks.actions import set_deploy_on_push
from services import actions
from services.access import cards_for_environment, get_service_for_user
from services.forms import ServiceForm
from services.manifests import DATA_MOUNT_PATH
from services.models import Build, Service
from services.streams import may_open_terminal
from spaces.access import live_projects, spaces_for_user
from spaces.allocation import format_mib
from spaces.http import HtmxHttpRequest, wants_fragment

# The modal sits in pages that have forms of their own (the selector's "Create new
# environment" has a `name` too): its own id prefix keeps every label on its field.
FORM_IDS = "deploy-%s"

# Sent with a successful modal submit: static/js/services.js closes the open dialog on it.
CLOSE_MODAL_TRIGGER = "ale:modal-close"


# --- responses ---------------------------------------------------------------------------------


def _page_context(request: HtmxHttpRequest, context: dict[str, Any]) -> dict[str, Any]:
    """`context` (which holds the environment) with what base.html's sidebar needs."""
    project = context["environment"].project
    return {
        "project": project,
        "space": project.space,
        "user_spaces": spaces_for_user(request.user),
        "space_projects": live_projects(project.space),
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
    html = render_to_string("services/_card.html", {"service": service}, request=request)
    response = HttpResponse(html + _messages_oob(request))
    if close_modal:
        response["HX-Trigger"] = CLOSE_MODAL_TRIGGER
    return response


def _refused(request: HtmxHttpRequest, service: Service, error: ValidationError) -> HttpResponse:
    """An action refused by its rules (the service or its environment is being deleted)."""
    for message in error.messages:
        messages.error(request, message)
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


@require_POST
@login_required
def start_all(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    """The selector's "Start All": every stopped service of the environment runs again."""
    environment = get_environment_for_user(request.user, env_id)
    try:
        count = actions.start_all(request.user, environment)
    except ValidationError as error:
        for message in error.messages:
            messages.error(request, message)
        count = 0
    else:
        if count:
            messages.success(request, f"Starting {count} service{'s' if count != 1 else ''}.")
        else:
            messages.info(request, "No stopped services to start.")
    if not wants_fragment(request):
        return redirect("environments:detail", env_id=environment.public_id)
    # Every card out of band (a page on another tab just ignores them), and the message.
    cards = "".join(
        render_to_string("services/_card.html", {"service": service, "oob": True}, request=request)
        for service in cards_for_environment(environment)
    )
    return HttpResponse(cards + _messages_oob(request))


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
        },
    )
    return render(request, "services/detail.html", context)


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
