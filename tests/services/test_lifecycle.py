"""One owner for a service's state: the deploy modal, a YAML apply, a clone, Start All, a card's
Start and deleting an environment go through the same transitions, so the same rules hold and
the same refusals read the same whichever way a change arrives."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from environments import actions as environment_actions
from environments import yaml_document
from services import actions, lifecycle
from services.forms import ServiceForm, spec_of
from services.models import Build, Service
from tests.environments.travel import enqueued, make_service
from tests.factories import make_environment
from tests.spaces.helpers import allocate

pytestmark = pytest.mark.django_db

REPO = "https://github.com/acme/shop.git"


def deploy_git(env, user, **overrides: Any) -> Service:
    data = {
        "name": "shop", "kind": "web", "source": "git", "repository_url": REPO, "branch": "main",
        "repository_path": "", "dockerfile": "Dockerfile", "port": "8000", "cpu": "0.1", "memory": "64Mi",
        "replicas": "1", "capacity": "on_demand", **overrides,
    }  # fmt: skip
    form = ServiceForm(data, environment=env)
    assert form.is_valid(), form.errors
    return actions.deploy_service(user, env, form.cleaned_data)


def git_file(branch: str, state: str = "running") -> bytes:
    return (
        "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"
        f"    - {{name: shop, kind: web, port: 8000, state: {state}, resources: {{cpu: 0.1, memory: 64Mi}},"
        f" repository: {{url: '{REPO}', branch: {branch}}}}}\n"
    ).encode()


def test_it_builds_a_git_service_whose_branch_a_yaml_file_changes_cancelling_the_build_in_flight(
    main_env, owner, django_capture_on_commit_callbacks
):
    service = deploy_git(main_env, owner)
    first = service.builds.get()
    assert first.status == Build.Status.QUEUED
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = yaml_document.import_file(owner, main_env, git_file("release"))
    assert result.changed == ["shop"]
    first.refresh_from_db()
    assert (first.status, first.reason) == (Build.Status.CANCELLED, "Superseded by a newer deploy.")
    second = service.builds.get(number=2)
    assert (second.status, second.branch, second.created_by) == (Build.Status.QUEUED, "release", owner)
    service.refresh_from_db()
    assert (service.status, service.status_reason) == (Service.Status.BUILDING, "Building branch release.")
    tasks = enqueued(callbacks)
    assert ("services.tasks.delete_build_job", (first.pk,)) in tasks
    assert ("services.tasks.run_build", (second.pk,)) in tasks


def test_it_builds_from_a_yaml_file_as_the_deploy_modal_does(main_env, owner, django_capture_on_commit_callbacks):
    # The same change through the modal: a new build, the one in flight cancelled.
    service = deploy_git(main_env, owner)
    with django_capture_on_commit_callbacks(execute=False):
        form = ServiceForm({**spec_of(service), "branch": "release"}, environment=main_env, service=service)
        assert form.is_valid(), form.errors
        actions.deploy_service(owner, main_env, form.cleaned_data, service)
    assert list(service.builds.order_by("number").values_list("status", "branch")) == [
        (Build.Status.CANCELLED, "main"), (Build.Status.QUEUED, "release"),
    ]  # fmt: skip


def test_it_leaves_the_builds_alone_when_a_yaml_file_keeps_the_branch(main_env, owner, django_capture_on_commit_callbacks):
    service = deploy_git(main_env, owner)
    with django_capture_on_commit_callbacks(execute=False):
        result = yaml_document.import_file(owner, main_env, git_file("main"))
    assert result.unchanged == ["shop"]
    assert list(service.builds.values_list("status", flat=True)) == [Build.Status.QUEUED]


def test_it_drops_the_old_branch_image_of_a_stopped_git_service_so_that_its_start_builds_the_new_one(
    main_env, owner, django_capture_on_commit_callbacks
):
    service = deploy_git(main_env, owner)
    Service.objects.filter(pk=service.pk).update(image="registry.local/shop:b1")
    Build.objects.filter(service=service).update(status=Build.Status.SUCCEEDED)
    actions.stop_service(owner, service)
    with django_capture_on_commit_callbacks(execute=False):
        yaml_document.import_file(owner, main_env, git_file("release", state="stopped"))
    service.refresh_from_db()
    assert (service.branch, service.image, service.desired_state) == ("release", "", "stopped")
    with django_capture_on_commit_callbacks(execute=False):
        actions.start_service(owner, service)
    service.refresh_from_db()
    assert service.status == Service.Status.BUILDING
    assert service.builds.get(number=2).branch == "release"


def test_it_refuses_a_missing_secret_with_the_same_words_from_a_card_start_all_and_a_yaml_file(main_env, owner):
    service = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432",
                           env_vars="POSTGRES_PASSWORD=${{ secrets.DB_PASSWORD }}")  # fmt: skip
    actions.stop_service(owner, service)
    file = (
        "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"
        "    - {name: db, kind: tcp, image: 'postgres:16', port: 5432, state: running,"
        " env: [{name: POSTGRES_PASSWORD, secret: DB_PASSWORD}]}\n"
    ).encode()
    refusals = []
    for attempt in (
        lambda: actions.start_service(owner, service),
        lambda: actions.start_all(owner, main_env),
        lambda: yaml_document.import_file(owner, main_env, file),
    ):
        with pytest.raises(ValidationError) as raised:
            attempt()
        refusals.append(raised.value.messages)
    assert refusals == [["Cannot start db: this environment has no secret DB_PASSWORD. Set it in Settings → Secret Management, then start again."]] * 3
    service.refresh_from_db()
    assert (service.desired_state, service.generation) == ("stopped", 2)


def test_it_refuses_the_allocation_with_the_same_words_from_a_card_start_all_a_clone_and_a_yaml_file(space, project, main_env, owner):
    service = make_service(main_env, owner, name="api", cpu="2")
    actions.stop_service(owner, service)
    allocate(space, on_demand_cpu_millicores=1000, service_max_cpu_millicores=4000)
    file = b"apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n    - {name: api, kind: web, image: 'nginx:1.27', port: 80, resources: {cpu: 2}, state: running}\n"
    refusals = []
    for attempt in (
        lambda: actions.start_service(owner, service),
        lambda: actions.start_all(owner, main_env),
        lambda: yaml_document.import_file(owner, main_env, file),
    ):
        with pytest.raises(ValidationError) as raised:
            attempt()
        refusals.append(raised.value.messages)
    assert len({tuple(messages) for messages in refusals}) == 1, refusals
    assert "On-demand vCPU: this needs 2.0 vCPU" in refusals[0][0]
    # A clone is stopped: only the per-service maximum can refuse it, in the same words as a deploy.
    allocate(space, on_demand_cpu_millicores=1000, service_max_cpu_millicores=1000)
    with pytest.raises(ValidationError) as cloned:
        environment_actions.clone_environment(acting_user=owner, source=main_env, name="qa", cluster=main_env.cluster)
    staging = make_environment(project, by=owner, name="staging")
    form = ServiceForm(
        {"name": "api", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "2",
         "memory": "256Mi", "replicas": "1", "health_check_path": "/", "capacity": "on_demand"},
        environment=staging,
    )  # fmt: skip
    assert form.is_valid(), form.errors
    with pytest.raises(ValidationError) as deployed:
        actions.deploy_service(owner, staging, form.cleaned_data)
    assert cloned.value.messages == deployed.value.messages


def test_it_refuses_a_shrinking_disk_with_the_same_words_from_a_rollback_and_a_yaml_apply(main_env, owner, django_capture_on_commit_callbacks):
    service = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi")
    document = yaml_document.parse_document(
        b"apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n"
        b"    - {name: db, kind: tcp, image: 'postgres:16', port: 5432, resources: {disk: 3Gi}}\n",
        main_env,
    )
    form = ServiceForm({**spec_of(service), "disk": "5Gi"}, environment=main_env, service=service)
    assert form.is_valid(), form.errors
    with django_capture_on_commit_callbacks(execute=False):
        actions.deploy_service(owner, main_env, form.cleaned_data, service)
    with pytest.raises(ValidationError) as from_file:
        yaml_document.apply_document(owner, main_env, document)
    with pytest.raises(ValidationError) as rolled_back:
        actions.rollback_service(owner, service, service.revisions.get(number=1))
    assert from_file.value.messages == [f"db: {message}" for message in rolled_back.value.messages]


def test_it_cancels_the_builds_and_marks_the_services_when_their_environment_is_deleted(
    project, main_env, owner, django_capture_on_commit_callbacks
):
    staging = make_environment(project, by=owner, name="staging")
    service = deploy_git(staging, owner)
    build = service.builds.get()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        environment_actions.delete_environment(acting_user=owner, environment=staging)
    build.refresh_from_db()
    assert (build.status, build.reason) == (Build.Status.CANCELLED, "The environment was deleted.")
    service.refresh_from_db()
    assert (service.status, service.desired_state) == (Service.Status.DELETING, "stopped")
    # The namespace goes with everything in it: no reconcile per service.
    assert [name for name, _ in enqueued(callbacks)] == ["environments.tasks.delete_environment"]
    with pytest.raises(ValidationError, match="being deleted"):
        actions.start_service(owner, service)


def test_it_writes_a_failure_only_on_the_generation_it_is_about(main_env, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        service = make_service(main_env, owner)
        stale_generation = service.generation
        actions.stop_service(owner, service)
    assert not lifecycle.mark_failed(service, stale_generation, "refused")
    service.refresh_from_db()
    assert service.status == Service.Status.STOPPING
    assert lifecycle.mark_failed(service, service.generation, "refused")
    service.refresh_from_db()
    assert (service.status, service.status_reason) == (Service.Status.FAILED, "refused")
