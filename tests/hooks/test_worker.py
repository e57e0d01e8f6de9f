"""Push and pull request deliveries through the endpoint, a real Celery worker, the watcher
and the devcluster: the build runs and the service ends Running; a closed request's
environment and namespace go."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from clusters.client import client_for
from environments.manifests import render_environment
from environments.models import Environment
from hooks import actions
from services import actions as service_actions
from services.forms import ServiceForm
from services.models import Build, Service
from spaces.actions import create_project
from tests.hooks import examples as ex
from tests.services.stream_helpers import delete_namespace
from tests.waiting import wait_for


@pytest.fixture
def hook_env(kube_cluster, space, owner) -> Iterator[Environment]:
    kube_cluster.registry = "registry.local:5000/ale"
    kube_cluster.build_cpu_millicores = 200
    kube_cluster.build_memory_mib = 256
    kube_cluster.save()
    project = create_project(acting_user=owner, space=space, name="hooked", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    client_for(kube_cluster).apply(render_environment(environment))
    yield environment
    delete_namespace(environment)


def deploy(env, user, **overrides: Any) -> Service:
    data = {
        "name": "shop", "kind": "web", "source": "git", "repository_url": ex.GITHUB_REPOSITORY_URL, "branch": "master",
        "repository_path": "", "dockerfile": "Dockerfile", "port": "8000", "cpu": "0.1", "memory": "64Mi",
        "replicas": "1", "capacity": "on_demand", "image": "", **overrides,
    }  # fmt: skip
    form = ServiceForm(data, environment=env)
    assert form.is_valid(), form.errors
    return service_actions.deploy_service(user, env, form.cleaned_data)


def send(hook, event: str, payload: dict[str, Any]) -> None:
    body = ex.body_of(payload)
    response = Client().post(
        reverse("hooks:receive", args=[hook.public_id]), data=body, content_type="application/json",
        **ex.github_headers(hook.secret, body, event),
    )  # fmt: skip
    assert response.status_code == 202


def running(service: Service) -> Service | None:
    row = Service.objects.get(pk=service.pk)
    return row if row.status == Service.Status.RUNNING else None


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_push_builds_and_runs_through_the_worker(celery_worker, hook_env, watcher, owner):
    service = deploy(hook_env, owner)
    wait_for(lambda: running(service), timeout=40, what="the first build running")
    hook = actions.ensure_hook(hook_env.project)

    send(hook, "push", ex.github_push(branch="master"))

    build = wait_for(lambda: service.builds.filter(number=2).first(), what="the push's build recorded")
    assert build.branch == "master"
    assert service.revisions.order_by("-number").first().cause == "push of f95f852 by Codertocat"
    row = wait_for(
        lambda: (r := running(service)) and r.image == Build.objects.get(pk=build.pk).image and r,
        timeout=40, what="the pushed build running",
    )  # fmt: skip
    assert Build.objects.get(pk=build.pk).status == Build.Status.SUCCEEDED
    assert row.status == Service.Status.RUNNING


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_request_gets_a_running_preview_that_goes_when_it_closes(celery_worker, hook_env, watcher, owner):
    deploy(hook_env, owner)
    hook = actions.set_preview_settings(
        acting_user=owner, project=hook_env.project, enabled=True, base=hook_env, with_secrets=False, allow_forks=False
    )
    kube = client_for(hook_env.cluster)

    send(hook, "pull_request", ex.github_pull_request("opened", number=7))

    preview = wait_for(lambda: Environment.objects.filter(name="pr-7").first(), what="pr-7 created")
    shop = wait_for(lambda: preview.services.filter(name="shop").first(), what="the preview's service")
    build = wait_for(lambda: shop.builds.first(), what="the preview's build")
    assert build.branch == "changes"
    wait_for(lambda: running(shop), timeout=40, what="the preview running")
    assert kube.get("v1", "Namespace", preview.namespace) is not None

    send(hook, "pull_request", ex.github_pull_request("closed", number=7))

    wait_for(lambda: not Environment.objects.filter(pk=preview.pk).exists(), timeout=60, what="pr-7 deleted")
    assert kube.get("v1", "Namespace", preview.namespace) is None


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_fork_request_is_ignored_by_the_worker(celery_worker, hook_env, owner):
    deploy(hook_env, owner)
    hook = actions.set_preview_settings(
        acting_user=owner, project=hook_env.project, enabled=True, base=hook_env, with_secrets=False, allow_forks=False
    )
    send(hook, "pull_request", ex.github_pull_request("opened", number=8, fork=True))
    delivery = wait_for(lambda: hook.deliveries.filter(processed_at__isnull=False).first(), what="the delivery processed")
    assert "fork" in delivery.outcome
    assert not Environment.objects.filter(name="pr-8").exists()
