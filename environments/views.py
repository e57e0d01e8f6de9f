from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from django.conf import settings as django_settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from environments import actions
from environments.access import get_environment_for_user
from environments.forms import DeleteConfirmForm, EnvironmentCreateForm, EnvironmentRenameForm
from environments.models import ClusterEvent, Environment
from services.access import card_page
from services.models import Service
from spaces.access import get_project_for_user, live_projects, spaces_for_user
from spaces.actions import update_project_display_name
from spaces.forms import ProjectDisplayNameForm
from spaces.http import HtmxHttpRequest, wants_fragment

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


def _delete_form(environment: Environment, is_last: bool, data: Any = None) -> DeleteConfirmForm:
    # Deleting the only environment deletes the project, so the project's name confirms it.
    expected = environment.project.name if is_last else environment.name
    return DeleteConfirmForm(data, expected=expected)


def _render_tab(
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
    }
    if tab == "information":
        page = _card_page_number(request)
        if wants_fragment(request) and "page" in request.GET:
            # The grid's sentinel asking for the next page: only those cards and the next sentinel.
            start = (page - 1) * CARDS_PER_PAGE
            cards, has_more = card_page(environment, start, start + CARDS_PER_PAGE)
            return render(
                request,
                "environments/_service_page.html",
                {"environment": environment, "services": cards, "next_page": page + 1 if has_more else None},
            )
        # The whole tab (or the no-JavaScript "Show more" link): every card up to `page`, so
        # the page a link leads to is still one list in order, from the first service.
        context["services"], has_more = card_page(environment, 0, page * CARDS_PER_PAGE)
        context["next_page"] = page + 1 if has_more else None
        from environments.travel_views import missing_secrets_for_cards

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
    elif tab == "events":
        context["events"] = ClusterEvent.objects.recent(environment)
    elif tab == "settings":
        is_last = len(environments) == 1
        context.update(
            is_last=is_last,
            rename_form=EnvironmentRenameForm(environment=environment),
            project_form=ProjectDisplayNameForm(initial={"display_name": project.display_name}),
            delete_form=_delete_form(environment, is_last),
        )
        from environments.travel_views import settings_context

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
        user_spaces=spaces_for_user(request.user),
        space_projects=live_projects(project.space),
        create_form=extra.get("create_form") or EnvironmentCreateForm(project=project),
    )
    return render(request, "environments/detail.html", context)


@require_GET
@login_required
def detail(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    return _render_tab(request, environment, "information")


@require_GET
@login_required
def events(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    return _render_tab(request, environment, "events")


@require_GET
@login_required
def settings(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    return _render_tab(request, environment, "settings")


@require_POST
@login_required
def create(request: HtmxHttpRequest, project_id: str) -> HttpResponse:
    project = get_project_for_user(request.user, project_id)
    form = EnvironmentCreateForm(request.POST, project=project)
    cloned = None
    if form.is_valid() and form.cleaned_data.get("source") is not None:
        try:
            cloned = actions.clone_environment(
                acting_user=request.user,
                source=form.cleaned_data["source"],
                name=form.cleaned_data["name"],
                cluster=form.cleaned_data["cluster"],
            )
        except ValidationError as error:
            # Refused by the space's allocation: the form says why, and nothing was created.
            form.add_error(None, error)
    if not form.is_valid():
        if wants_fragment(request):
            live = list(project.environments.filter(deleting_at__isnull=True))
            return render(
                request, "environments/_create_form.html", {"project": project, "create_form": form, "environments": live}
            )
        # Without JavaScript the form lives in the selector of the environment the user came from.
        live = project.environments.filter(deleting_at__isnull=True)
        source = live.filter(public_id=request.POST.get("from", "")).first() or live.first()
        if source is None:
            return redirect("spaces:project-detail", project_id=project.public_id)
        source.project = project
        return _render_tab(request, source, "information", create_form=form, selector_open=True)

    source = form.cleaned_data.get("source")
    if source is not None and cloned is not None:
        environment = cloned
        count = environment.services.count()
        messages.success(
            request,
            f"{environment.name} created as a clone of {source.name}: {count} service{'s' if count != 1 else ''}, stopped.",
        )
    else:
        environment = actions.create_environment(
            acting_user=request.user, project=project, name=form.cleaned_data["name"], cluster=form.cleaned_data["cluster"]
        )
    url = reverse("environments:detail", args=[environment.public_id])
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _settings_saved(request: HtmxHttpRequest, environment: Environment, message: str, *, header_changed: bool) -> HttpResponse:
    messages.success(request, message)
    if wants_fragment(request):
        return _render_tab(request, environment, "settings", header_changed=header_changed)
    return redirect("environments:settings", env_id=environment.public_id)


@require_POST
@login_required
def rename(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    form = EnvironmentRenameForm(request.POST, environment=environment)
    if not form.is_valid():
        return _render_tab(request, environment, "settings", rename_form=form)
    actions.rename_environment(acting_user=request.user, environment=environment, name=form.cleaned_data["name"])
    return _settings_saved(request, environment, "Environment renamed.", header_changed=True)


@require_POST
@login_required
def project_update(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    form = ProjectDisplayNameForm(request.POST)
    if not form.is_valid():
        return _render_tab(request, environment, "settings", project_form=form)
    update_project_display_name(
        acting_user=request.user, project=environment.project, display_name=form.cleaned_data["display_name"]
    )
    return _settings_saved(request, environment, "Display name saved.", header_changed=True)


@require_POST
@login_required
def set_default(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    actions.set_default_environment(acting_user=request.user, environment=environment)
    return _settings_saved(
        request, environment, f"{environment.name} is now the default environment.", header_changed=True
    )


@require_POST
@login_required
def delete(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    project = environment.project
    is_last = not project.environments.filter(deleting_at__isnull=True).exclude(pk=environment.pk).exists()
    form = _delete_form(environment, is_last, request.POST)
    if not form.is_valid():
        return _render_tab(request, environment, "settings", delete_form=form)

    name = environment.name
    remaining = actions.delete_environment(acting_user=request.user, environment=environment)
    # The namespace goes in the background (a Celery task): say so, and the selector shows the
    # environment greyed until the task has removed it.
    if remaining is None:
        messages.success(request, f"Deleting project {project.name}… its namespace is being removed.")
        url = reverse("spaces:detail", args=[project.space.public_id])
    else:
        messages.success(request, f"Deleting {name}… its namespace is being removed.")
        url = reverse("spaces:project-detail", args=[remaining.public_id])
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)
