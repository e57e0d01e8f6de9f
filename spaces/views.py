from __future__ import annotations

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from spaces import actions
from spaces.access import (
    get_project_by_handle_for_user,
    get_project_for_user,
    get_space_for_user,
    is_owner,
    live_projects,
)
from spaces.forms import ProjectCreateForm, SignupForm, SpaceCreateForm
from spaces.http import HtmxHttpRequest, wants_fragment
from spaces.models import Space
from spaces.sidebar import sidebar_context


def environment_url(public_id: str) -> str:
    return reverse("environments:detail", args=[public_id])


@require_GET
@login_required
def home(request: HtmxHttpRequest) -> HttpResponse:
    # Accounts made outside signup (createsuperuser, the admin) get their default space here.
    space = actions.ensure_default_space(request.user)
    return redirect("spaces:detail", space_id=space.public_id)


@require_http_methods(["GET", "POST"])
def signup(request: HtmxHttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = actions.sign_up(
            username=form.cleaned_data["username"],
            email=form.cleaned_data["email"],
            password=form.cleaned_data["password1"],
        )
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("home")
    return render(request, "registration/signup.html", {"form": form})


def _new_space_page(request: HtmxHttpRequest, form: SpaceCreateForm) -> HttpResponse:
    if wants_fragment(request):
        return render(request, "spaces/_space_form.html", {"form": form})
    return render(request, "spaces/new.html", {"form": form, **sidebar_context(request.user)})


@require_http_methods(["GET", "POST"])
@login_required
def space_create(request: HtmxHttpRequest) -> HttpResponse:
    if request.method == "GET":
        return _new_space_page(request, SpaceCreateForm())
    form = SpaceCreateForm(request.POST)
    if not form.is_valid():
        return _new_space_page(request, form)
    try:
        space = actions.create_space(acting_user=request.user, name=form.cleaned_data["name"])
    except ValidationError as error:
        # Another request took the name after the form checked it.
        form.add_error(None, error)
        return _new_space_page(request, form)
    url = reverse("spaces:detail", args=[space.public_id])
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


def _space_page(request: HtmxHttpRequest, space: Space, form: ProjectCreateForm) -> HttpResponse:
    projects = live_projects(space)
    context = {
        "space": space,
        "projects": projects,
        "form": form,
        # The same queryset object: the sidebar reuses the list instead of querying again.
        **sidebar_context(request.user, space, projects=projects),
        "is_space_owner": is_owner(request.user, space),
    }
    return render(request, "spaces/detail.html", context)


@require_GET
@login_required
def space_detail(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_user(request.user, space_id)
    return _space_page(request, space, ProjectCreateForm(space=space))


@require_POST
@login_required
def project_create(request: HtmxHttpRequest, space_id: str) -> HttpResponse:
    space = get_space_for_user(request.user, space_id)
    form = ProjectCreateForm(request.POST, space=space)
    if not form.is_valid():
        if wants_fragment(request):
            return render(request, "spaces/_project_form.html", {"space": space, "form": form})
        return _space_page(request, space, form)

    project = actions.create_project(
        acting_user=request.user,
        space=space,
        name=form.cleaned_data["name"],
        display_name=form.cleaned_data["display_name"],
        cluster=form.cleaned_data["cluster"],
    )
    # The user lands on the new project's `main` environment.
    url = environment_url(project.default_environment.public_id)
    if wants_fragment(request):
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_GET
@login_required
def project_alias(request: HtmxHttpRequest, space_name: str, project_name: str) -> HttpResponse:
    project = get_project_by_handle_for_user(request.user, space_name, project_name)
    return redirect("spaces:project-detail", project_id=project.public_id)


@require_GET
@login_required
def project_detail(request: HtmxHttpRequest, project_id: str) -> HttpResponse:
    """Opening a project loads its default environment."""
    project = get_project_for_user(request.user, project_id)
    live = project.environments.filter(deleting_at__isnull=True)
    environment = live.filter(pk=project.default_environment_id).first() or live.first()
    if environment is None:
        # All its environments are being deleted: the project is going too.
        return redirect("spaces:detail", space_id=project.space.public_id)
    return redirect(environment_url(environment.public_id))
