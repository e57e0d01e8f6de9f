"""The environment page's tabs: what each shows, rendered whole or, for htmx, as the tab alone.

Shared by `environments.views` (the page, rename, delete) and `environments.config_views`
(variables, secrets, the firewall), which both answer with the tab they changed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.conf import settings as django_settings
from django.http import HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string

from environments.forms import (
    DeleteConfirmForm,
    EnvironmentCreateForm,
    EnvironmentRenameForm,
    FirewallForm,
    VariableForm,
)
from environments.yaml_document import referenced_secret_keys
from environments.models import RECENT_EVENTS, ClusterEvent, Environment, EnvironmentVariable
from services import guards, progress
from services.access import card_page
from services.models import Service
from spaces.forms import ProjectDisplayNameForm
from spaces.http import HtmxHttpRequest, wants_fragment
from spaces.sidebar import sidebar_context

TABS = ("information", "events", "settings")

# Cards the Information tab renders at once: rendering hundreds of cards was most of the page's
# time, so the rest come a page at a time as the grid scrolls into view (or by a link).
CARDS_PER_PAGE = 60


def _card_page_number(request: HtmxHttpRequest) -> int:
    # A hand-edited or stale ?page= falls back to the first page rather than failing.
    try:
        return max(1, int(request.GET.get("page", "1")))
    except ValueError:
        return 1


def delete_form(environment: Environment, is_last: bool, data: Any = None) -> DeleteConfirmForm:
    # Deleting the only environment deletes the project, so the project's name confirms it.
    expected = environment.project.name if is_last else environment.name
    return DeleteConfirmForm(data, expected=expected)


def render_tab(
    request: HtmxHttpRequest, environment: Environment, tab: str, *, header_changed: bool = False, **extra: Any
) -> HttpResponse:
    """The environment page on `tab`: the whole page, or for htmx only the tab (and what changed)."""
    project = environment.project
    # One query for the selector however many environments there are; the settings tab reuses
    # the live ones. Environments being deleted stay in the selector, greyed, until they are gone.
    selector_environments = list(project.environments.select_related("preview"))
    environments = [option for option in selector_environments if not option.is_deleting]
    context: dict[str, Any] = {
        "environment": environment,
        "project": project,
        "space": project.space,
        "environments": selector_environments,
        "tab": tab,
        "event_retention_days": django_settings.EVENT_RETENTION_DAYS,
        # The banner of a Start All or Stop All in flight (no query when there is none).
        "progress": progress.shown(environment),
    }
    if tab == "information":
        page = _card_page_number(request)
        if wants_fragment(request) and "page" in request.GET:
            # The grid's sentinel asking for the next page: only those cards and the next sentinel.
            start = (page - 1) * CARDS_PER_PAGE
            cards, has_more = card_page(environment, start, start + CARDS_PER_PAGE)
            guards.note_missing_secrets(cards)
            return render(
                request,
                "environments/_service_page.html",
                {"environment": environment, "services": cards, "next_page": page + 1 if has_more else None},
            )
        # The whole tab (or the no-JavaScript "Show more" link): every card up to `page`, so
        # the page a link leads to is still one list in order, from the first service.
        context["services"], has_more = card_page(environment, 0, page * CARDS_PER_PAGE)
        context["next_page"] = page + 1 if has_more else None
        # Over every service, not only the cards shown: a secret missing for a card further
        # down still stops Start All. Only the fields it reads, in one query, as plain rows:
        # deferred models (`.only()`) cost one more query per service here.
        referring = [
            SimpleNamespace(**row)
            for row in environment.services.exclude(status=Service.Status.DELETING).values(
                "status", "env_vars", "git_token_secret"
            )
        ]
        context["missing_secrets"] = missing_secrets_for_cards(environment, referring)
        lacking = set(context["missing_secrets"])
        if lacking:
            # What each stopped card lacks to start, from the list just read (no query more).
            for service in context["services"]:
                if service.desired_state == Service.DesiredState.STOPPED:
                    service.missing_secrets = sorted(service.secret_keys & lacking)
    elif tab == "events":
        context["events"] = ClusterEvent.objects.recent(environment)
        context["events_shown"] = RECENT_EVENTS
    elif tab == "settings":
        is_last = len(environments) == 1
        context.update(
            is_last=is_last,
            rename_form=EnvironmentRenameForm(environment=environment),
            project_form=ProjectDisplayNameForm(initial={"display_name": project.display_name}),
            delete_form=delete_form(environment, is_last),
        )
        context.update(settings_context(request, environment))
    context.update(extra)

    if wants_fragment(request):
        html = render_to_string(f"environments/_{tab}.html", context, request=request)
        # Swapped out of band: flash messages always, the header when the name changed.
        html += render_to_string("_messages.html", {"oob": True}, request=request)
        if header_changed:
            header_context = {**context, "oob": True, "create_form": EnvironmentCreateForm(project=project)}
            html += render_to_string("environments/_header.html", header_context, request=request)
        return HttpResponse(html)

    context.update(
        **sidebar_context(request.user, project.space),
        create_form=extra.get("create_form") or EnvironmentCreateForm(project=project),
    )
    return render(request, "environments/detail.html", context)


def settings_context(request: HtmxHttpRequest, environment: Environment) -> dict[str, Any]:
    """What the Settings tab's Secret Management and Firewall sections show."""
    variables = list(EnvironmentVariable.objects.filter(environment=environment))
    services = list(
        Service.objects.filter(environment=environment).exclude(status=Service.Status.DELETING).only(
            "name", "kind", "port", "env_vars", "git_token_secret", "external_node_port", "desired_state", "environment_id"
        )
    )
    have = {v.key for v in variables}
    referenced = referenced_secret_keys(services)
    tcp_services = [s for s in services if s.kind == Service.Kind.TCP]
    for service in tcp_services:
        # Already loaded: `external_address` reads the environment and its cluster.
        service.environment = environment
    return {
        # Plain variables show their value; a secret's value is never decrypted for a page.
        "variables": [
            {"key": v.key, "is_secret": v.is_secret, "value": "" if v.is_secret else v.value} for v in variables
        ],
        "missing_secrets": [key for key in referenced if key not in have],
        "variable_form": VariableForm(),
        "firewall_form": FirewallForm(environment=environment),
        "tcp_services": tcp_services,
        "running_count": sum(1 for s in services if s.desired_state == Service.DesiredState.RUNNING),
        "offer_restart": request.GET.get("restart") == "1",
    }


def missing_secrets_for_cards(environment: Environment, services: list[Any]) -> list[str]:
    """Secret keys the Information tab's services refer to and the environment lacks (after a
    clone, say). No query unless a service refers to a secret at all."""
    referenced = set(referenced_secret_keys([s for s in services if s.status != "deleting"]))
    if not referenced:
        return []
    have = set(EnvironmentVariable.objects.filter(environment=environment, key__in=referenced).values_list("key", flat=True))
    return sorted(referenced - have)
