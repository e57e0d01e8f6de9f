"""What a push and a pull request do, through the delivery task run in this process (the flows
through a real worker are in test_worker.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from environments.actions import set_variables
from environments.models import Environment, EnvironmentVariable
from hooks import actions
from hooks.models import Delivery, Preview, ProjectHook
from hooks.tasks import process_delivery
from services import actions as service_actions
from services.forms import ServiceForm
from services.models import Build, Service
from spaces.models import AuditEntry
from tests.hooks import examples as ex
from tests.spaces.helpers import allocate


def deploy(env, user, **overrides: Any) -> Service:
    data = {
        "name": "shop", "kind": "web", "source": "git", "repository_url": ex.GITHUB_REPOSITORY_URL, "branch": "master",
        "repository_path": "", "dockerfile": "Dockerfile", "port": "8000", "cpu": "0.1", "memory": "64Mi",
        "replicas": "1", "capacity": "on_demand", "image": "", **overrides,
    }  # fmt: skip
    form = ServiceForm(data, environment=env)
    assert form.is_valid(), form.errors
    return service_actions.deploy_service(user, env, form.cleaned_data)


@pytest.fixture
def git_env(main_env):
    main_env.cluster.registry = "registry.local:5000/ale"
    main_env.cluster.save()
    return main_env


def deliver(hook: ProjectHook, event: str, payload: dict[str, Any], provider: str = "github") -> str:
    body = ex.body_of(payload)
    if provider == "github":
        headers = ex.github_headers(hook.secret, body, event)
    elif provider == "gitlab":
        headers = ex.gitlab_headers(hook.secret, {"push": "Push Hook", "pull_request": "Merge Request Hook"}[event])
    else:
        headers = ex.gitea_headers(hook.secret, body, event)
    response = Client().post(reverse("hooks:receive", args=[hook.public_id]), data=body, content_type="application/json", **headers)
    assert response.status_code == 202
    delivery = Delivery.objects.order_by("-pk").first()
    # What the worker runs, here in the test's transaction.
    return process_delivery(delivery.pk)


@pytest.mark.django_db
def test_a_push_builds_the_services_tracking_that_branch_only(git_env, owner, owner_client, project):
    shop = deploy(git_env, owner)
    other_branch = deploy(git_env, owner, name="docs", branch="gh-pages")
    # Through the deploy modal, with "Deploy on push" shown and left unticked.
    data = {
        "name": "admin", "kind": "web", "source": "git", "repository_url": ex.GITHUB_REPOSITORY_URL, "branch": "master",
        "dockerfile": "Dockerfile", "port": "8000", "cpu": "0.1", "memory": "64Mi", "replicas": "1",
        "capacity": "on_demand", "health_check_path": "/", "deploy_on_push_shown": "1",
    }  # fmt: skip
    assert owner_client.post(reverse("services:deploy", args=[git_env.public_id]), data).status_code == 302
    manual = Service.objects.get(name="admin")
    other_repo = deploy(git_env, owner, name="blog", repository_url="https://github.com/acme/blog.git")
    assert not manual.deploy_on_push and shop.deploy_on_push
    hook = actions.ensure_hook(project)

    outcome = deliver(hook, "push", ex.github_push(branch="master"))

    assert outcome.startswith("push of f95f852 by Codertocat: deployed main/shop")
    revision = shop.revisions.order_by("-number").first()
    assert revision.cause == "push of f95f852 by Codertocat" and revision.number == 2
    build = shop.builds.order_by("-number").first()
    assert (build.number, build.branch, build.repository_url) == (2, "master", ex.GITHUB_REPOSITORY_URL)
    assert Service.objects.get(pk=shop.pk).status == Service.Status.BUILDING
    entry = AuditEntry.objects.filter(action="service.deploy", service_name="shop").order_by("-pk").first()
    assert entry.details["cause"] == "push of f95f852 by Codertocat"
    for untouched in (other_branch, manual, other_repo):
        assert untouched.builds.count() == 1 and untouched.revisions.count() == 1
    # The delivery remembers what it did.
    assert Delivery.objects.get().outcome == outcome


@pytest.mark.django_db
def test_gitlab_and_gitea_pushes_build_their_repositories(git_env, owner, project):
    gitlab = deploy(git_env, owner, name="diaspora", repository_url=ex.GITLAB_REPOSITORY_URL, branch="master")
    gitea = deploy(git_env, owner, name="webhooks", repository_url="http://localhost:3000/gitea/webhooks", branch="develop")
    hook = actions.ensure_hook(project)
    deliver(hook, "push", ex.GITLAB_PUSH, provider="gitlab")
    deliver(hook, "push", ex.GITEA_PUSH, provider="gitea")
    assert gitlab.revisions.order_by("-number").first().cause == "push of da15608 by jsmith"
    assert gitea.revisions.order_by("-number").first().cause == "push of bffeb74 by gitea"


@pytest.mark.django_db
def test_a_push_to_another_branch_does_nothing(git_env, owner, project):
    shop = deploy(git_env, owner)
    hook = actions.ensure_hook(project)
    assert deliver(hook, "push", ex.github_push(branch="feature")) == "Push to feature: no service tracks it."
    assert shop.builds.count() == 1


@pytest.fixture
def previews_on(git_env, owner, project) -> ProjectHook:
    """main: a Git service of the repository and an image service; previews cloned from it."""
    deploy(git_env, owner)
    deploy(git_env, owner, name="cache", source="image", image="redis:7", repository_url="", branch="")
    set_variables(acting_user=owner, environment=git_env, values={"LOG_LEVEL": "debug"}, is_secret=False)
    set_variables(acting_user=owner, environment=git_env, values={"API_KEY": "k3y"}, is_secret=True)
    return actions.set_preview_settings(
        acting_user=owner, project=project, enabled=True, base=git_env, with_secrets=False, allow_forks=False
    )


@pytest.mark.django_db
def test_an_opened_request_gets_a_preview_that_builds_its_head(previews_on, project):
    deliver(previews_on, "pull_request", ex.github_pull_request("opened"))

    preview = Preview.objects.get()
    environment = preview.environment
    assert environment.name == "pr-2" and environment.project == project
    assert (preview.number, preview.url, preview.head_branch) == (2, "https://github.com/Codertocat/Hello-World/pull/2", "changes")
    shop = environment.services.get(name="shop")
    build = shop.builds.get()
    assert build.branch == "changes" and shop.branch == "changes"
    assert shop.desired_state == Service.DesiredState.RUNNING
    assert shop.revisions.order_by("-number").first().cause == "pull request #2"
    cache = environment.services.get(name="cache")
    assert cache.image == "redis:7" and cache.desired_state == Service.DesiredState.RUNNING
    # Plain variables come along; secrets do not unless the owner said so.
    assert set(EnvironmentVariable.objects.filter(environment=environment).values_list("key", flat=True)) == {"LOG_LEVEL"}
    assert AuditEntry.objects.filter(action="preview.create", environment_name="pr-2").exists()


@pytest.mark.django_db
def test_new_commits_rebuild_and_closing_deletes_the_preview(previews_on):
    deliver(previews_on, "pull_request", ex.github_pull_request("opened"))
    deliver(previews_on, "pull_request", ex.github_pull_request("synchronize", head_sha="a" * 40))
    environment = Environment.objects.get(name="pr-2")
    shop = environment.services.get(name="shop")
    assert shop.builds.count() == 2
    assert shop.revisions.order_by("-number").first().cause == "push of aaaaaaa to PR #2"
    assert Preview.objects.get().head_sha == "a" * 40

    deliver(previews_on, "pull_request", ex.github_pull_request("closed"))
    environment.refresh_from_db()
    assert environment.is_deleting


@pytest.mark.django_db
def test_a_request_from_a_fork_is_ignored_unless_forks_are_allowed(previews_on, owner, project):
    outcome = deliver(previews_on, "pull_request", ex.github_pull_request("opened", fork=True))
    assert "fork" in outcome
    assert not Environment.objects.filter(name="pr-2").exists()

    actions.set_preview_settings(
        acting_user=owner, project=project, enabled=True, base=previews_on.preview_base, with_secrets=True, allow_forks=True
    )
    deliver(previews_on, "pull_request", ex.github_pull_request("reopened", fork=True))
    environment = Environment.objects.get(name="pr-2")
    shop = environment.services.get(name="shop")
    assert shop.repository_url == "https://github.com/Forker/Hello-World.git" and shop.branch == "changes"
    # A fork's code never gets the secrets, even with the box ticked.
    assert not EnvironmentVariable.objects.filter(environment=environment, key="API_KEY").exists()


@pytest.mark.django_db
def test_secrets_come_along_when_the_owner_ticked_the_box(previews_on, owner, project):
    actions.set_preview_settings(
        acting_user=owner, project=project, enabled=True, base=previews_on.preview_base, with_secrets=True, allow_forks=False
    )
    deliver(previews_on, "pull_request", ex.github_pull_request("opened"))
    variable = EnvironmentVariable.objects.get(environment__name="pr-2", key="API_KEY")
    assert variable.is_secret and variable.value == "k3y"


@pytest.mark.django_db
def test_a_preview_beyond_the_allocation_is_created_stopped_and_says_why(previews_on, space, owner_client):
    # main runs two services; one more running service is one too many.
    allocate(space, max_running_services=2)
    deliver(previews_on, "pull_request", ex.github_pull_request("opened"))
    preview = Preview.objects.get()
    assert preview.start_refusal == "Running services: this needs 1, 0 of 2 is left"
    services = list(preview.environment.services.all())
    assert services and all(s.desired_state == Service.DesiredState.STOPPED for s in services)
    assert Build.objects.filter(service__environment=preview.environment).count() == 0
    # Its Git service already takes the request's branch: starting it later builds the request.
    shop = preview.environment.services.get(name="shop")
    assert shop.branch == "changes" and shop.revisions.order_by("-number").first().cause == "pull request #2"
    allocate(space, max_running_services=10)
    service_actions.start_all(None, preview.environment)
    assert shop.builds.get().branch == "changes"
    page = owner_client.get(reverse("environments:detail", args=[preview.environment.public_id])).content.decode()
    assert "PR #2" in page and "Created stopped:" in page


@pytest.mark.django_db
def test_gitlab_and_gitea_requests_open_previews(git_env, owner, project):
    deploy(git_env, owner, name="awesome", repository_url=ex.GITLAB_MR_REPOSITORY_URL)
    deploy(git_env, owner, name="webhooks", repository_url=ex.GITEA_REPOSITORY_URL)
    hook = actions.set_preview_settings(
        acting_user=owner, project=project, enabled=True, base=git_env, with_secrets=False, allow_forks=False
    )
    deliver(hook, "pull_request", ex.gitlab_merge_request("open"), provider="gitlab")
    deliver(hook, "pull_request", ex.gitea_pull_request("opened"), provider="gitea")
    assert Environment.objects.get(name="pr-1").services.get(name="awesome").branch == "ms-viewport"
    assert Environment.objects.get(name="pr-3").services.get(name="webhooks").branch == "feature/hooks"
    deliver(hook, "pull_request", ex.gitlab_merge_request("merge"), provider="gitlab")
    assert Environment.objects.get(name="pr-1").is_deleting


@pytest.mark.django_db
def test_previews_are_listed_apart_in_the_selector_with_a_badge(previews_on, owner_client, git_env):
    deliver(previews_on, "pull_request", ex.github_pull_request("opened"))
    page = owner_client.get(reverse("environments:detail", args=[git_env.public_id])).content.decode()
    previews_at = page.index(">Previews<")
    assert page.index(">pr-2<") > previews_at
    preview_env = Environment.objects.get(name="pr-2")
    page = owner_client.get(reverse("environments:detail", args=[preview_env.public_id])).content.decode()
    assert 'href="https://github.com/Codertocat/Hello-World/pull/2"' in page and "PR #2" in page


@pytest.mark.django_db
def test_previews_without_a_push_for_the_ttl_expire(previews_on, settings):
    from datetime import timedelta

    from django.utils import timezone

    deliver(previews_on, "pull_request", ex.github_pull_request("opened"))
    settings.PREVIEW_TTL_DAYS = 7
    assert actions.expire_previews(timezone.now() + timedelta(days=6)) == []
    assert actions.expire_previews(timezone.now() + timedelta(days=8)) == ["pr-2"]
    assert Environment.objects.get(name="pr-2").is_deleting


@pytest.mark.django_db
def test_the_deploy_form_offers_deploy_on_push_ticked_and_keeps_the_choice(git_env, owner, owner_client):
    page = owner_client.get(reverse("services:deploy", args=[git_env.public_id])).content.decode()
    assert '<input type="checkbox" name="deploy_on_push" checked>' in page and "Deploy on push" in page
    service = deploy(git_env, owner)
    assert service.deploy_on_push
    edit = reverse("services:edit", args=[service.public_id])
    data = {
        "kind": "web", "source": "git", "repository_url": ex.GITHUB_REPOSITORY_URL, "branch": "master",
        "dockerfile": "Dockerfile", "port": "8000", "cpu": "0.1", "memory": "64Mi", "replicas": "1",
        "capacity": "on_demand", "health_check_path": "/", "deploy_on_push_shown": "1",
    }  # fmt: skip
    assert owner_client.post(edit, data).status_code == 302
    service.refresh_from_db()
    assert not service.deploy_on_push
    page = owner_client.get(edit).content.decode()
    assert '<input type="checkbox" name="deploy_on_push">' in page
    # A rollback or a redeploy leaves the choice alone.
    service_actions.redeploy_service(owner, service)
    service.refresh_from_db()
    assert not service.deploy_on_push
