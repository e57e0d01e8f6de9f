from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST
from django_htmx.http import HttpResponseClientRedirect

from environments import actions
from environments.access import get_environment_for_user
from environments.forms import EnvironmentCreateForm, EnvironmentRenameForm
from environments.models import Environment
from environments.tabs import delete_form, render_tab
from spaces.access import get_project_for_user
from spaces.actions import update_project_display_name
from spaces.forms import ProjectDisplayNameForm
from spaces.http import HtmxHttpRequest, wants_fragment

@require_GET
@login_required
def detail(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    return render_tab(request, environment, "information")


@require_GET
@login_required
def events(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    return render_tab(request, environment, "events")


@require_GET
@login_required
def settings(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    return render_tab(request, environment, "settings")


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
        return render_tab(request, source, "information", create_form=form, selector_open=True)

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
        return render_tab(request, environment, "settings", header_changed=header_changed)
    return redirect("environments:settings", env_id=environment.public_id)


@require_POST
@login_required
def rename(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    form = EnvironmentRenameForm(request.POST, environment=environment)
    if not form.is_valid():
        return render_tab(request, environment, "settings", rename_form=form)
    actions.rename_environment(acting_user=request.user, environment=environment, name=form.cleaned_data["name"])
    return _settings_saved(request, environment, "Environment renamed.", header_changed=True)


@require_POST
@login_required
def project_update(request: HtmxHttpRequest, env_id: str) -> HttpResponse:
    environment = get_environment_for_user(request.user, env_id)
    form = ProjectDisplayNameForm(request.POST)
    if not form.is_valid():
        return render_tab(request, environment, "settings", project_form=form)
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
    form = delete_form(environment, is_last, request.POST)
    if not form.is_valid():
        return render_tab(request, environment, "settings", delete_form=form)

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
