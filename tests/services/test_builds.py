"""Builds from Git: the Job manifest, the build state machine through a real Celery worker and
the watcher on the devcluster, cancellation, the build log over the websocket, the history.

The devcluster runs build Jobs like any Job: a pod that prints a kaniko-style log for 1.5–3 s
and fails when the Job mentions `build-fails` (here: in the repository URL).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.urls import reverse

from clusters.client import client_for
from environments.actions import set_variables
from environments.manifests import render_environment
from services import actions
from services.access import get_service_for_user
from services.builds import commit_from_log, image_for, job_name_for, last_lines
from services.forms import ServiceForm
from services.manifests import git_context, render_build_job
from services.models import Build, Service
from services.resync import resync_cluster
from services.tasks import prune_builds
from spaces.actions import create_project
from tests.services.stream_helpers import delete_namespace, receive_json, socket, wait_for

REPO = "https://github.com/acme/shop.git"
FAILING_REPO = "https://github.com/acme/build-fails.git"


def git_data(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "shop", "kind": "web", "source": "git", "repository_url": REPO, "branch": "main",
        "repository_path": "", "dockerfile": "Dockerfile", "port": "8000", "cpu": "0.1", "memory": "64Mi",
        "replicas": "1", "capacity": "on_demand", **overrides,
    }  # fmt: skip


def deploy_git(env, user, service: Service | None = None, **overrides: Any) -> Service:
    form = ServiceForm(git_data(**overrides), environment=env, service=service)
    assert form.is_valid(), form.errors
    return actions.deploy_service(user, env, form.cleaned_data, service=service)


# --- the Job manifest (pure) ---------------------------------------------------------------------


@pytest.mark.django_db
def test_it_renders_the_build_job(main_env, owner):
    cluster = main_env.cluster
    cluster.registry_secret = "registry-push"
    cluster.build_cpu_millicores = 750
    cluster.build_memory_mib = 1536
    cluster.build_deadline_seconds = 900
    cluster.save()
    set_variables(acting_user=owner, environment=main_env, values={"GIT_TOKEN": "t0ken"}, is_secret=True)
    service = deploy_git(
        main_env, owner, repository_path="services/api", dockerfile="docker/Dockerfile.prod",
        build_args="PYTHON=3.12\nMODE=prod", git_token_secret="GIT_TOKEN",
    )  # fmt: skip
    build = service.builds.get()
    job = render_build_job(build)

    assert job["kind"] == "Job" and job["metadata"]["name"] == build.job_name
    assert job["metadata"]["namespace"] == main_env.namespace
    assert job["metadata"]["labels"]["ale.dev/build"] == build.public_id
    assert job["metadata"]["labels"]["ale.dev/service"] == service.public_id
    assert job["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "ale"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 900
    assert spec["ttlSecondsAfterFinished"] > 0
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    # The build pod is not one of the service's pods: no status, running log or terminal of it.
    assert "ale.dev/service" not in spec["template"]["metadata"]["labels"]
    assert spec["template"]["metadata"]["labels"]["ale.dev/build"] == build.public_id
    (container,) = pod["containers"]
    assert container["image"] == cluster.builder_image
    assert container["args"] == [
        "--context=git://github.com/acme/shop.git#refs/heads/main",
        "--dockerfile=docker/Dockerfile.prod",
        f"--destination={build.image}",
        "--cache=true",
        f"--cache-repo=registry.local:5000/ale/{main_env.public_id}/shop/cache",
        "--digest-file=/dev/termination-log",
        "--context-sub-path=services/api",
        "--build-arg=PYTHON=3.12",
        "--build-arg=MODE=prod",
    ]
    assert build.image == f"registry.local:5000/ale/{main_env.public_id}/shop:b1-{build.public_id}"
    assert container["resources"]["limits"] == {"cpu": "750m", "memory": "1536Mi"}
    assert container["resources"]["requests"] == {"cpu": "750m", "memory": "1536Mi"}
    token = {"secretKeyRef": {"name": "ale-env", "key": "GIT_TOKEN", "optional": False}}
    assert {"name": "GIT_TOKEN", "valueFrom": token} in container["env"]
    assert {"name": "GIT_PASSWORD", "valueFrom": token} in container["env"]
    assert container["volumeMounts"] == [{"name": "registry-credentials", "mountPath": "/kaniko/.docker", "readOnly": True}]
    assert pod["volumes"][0]["secret"] == {
        "secretName": "registry-push", "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
    }  # fmt: skip


@pytest.mark.django_db
def test_it_leaves_out_the_token_and_registry_secret_when_none_is_named(main_env, owner):
    job = render_build_job(deploy_git(main_env, owner).builds.get())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["env"] == []
    assert "volumeMounts" not in container and "volumes" not in job["spec"]["template"]["spec"]
    assert not any(arg.startswith(("--context-sub-path", "--build-arg")) for arg in container["args"])


@pytest.mark.django_db
def test_it_keeps_job_names_within_a_dns_label(main_env, owner):
    service = deploy_git(main_env, owner, name="a" * 63)
    assert len(service.builds.get().job_name) <= 63


def test_it_turns_repository_urls_into_kaniko_contexts():
    assert git_context("https://gitlab.com/acme/shop.git", "feature/x") == "git://gitlab.com/acme/shop.git#refs/heads/feature/x"
    assert git_context("git://example.com/shop", "main") == "git://example.com/shop#refs/heads/main"


def test_it_keeps_the_last_lines_without_colours_and_finds_the_commit():
    log = "Cloning\nHEAD is now at 3f2a9c1 Merge branch 'main'\n\n" + "\n".join(f"\x1b[31mline {i}\x1b[0m" for i in range(30))
    assert last_lines(log).splitlines() == [f"line {i}" for i in range(20, 30)]
    assert commit_from_log(log) == "3f2a9c1"
    assert commit_from_log("no commit here") == ""


@pytest.mark.django_db
def test_the_repository_button_opens_the_branch_and_path(main_env, owner):
    service = deploy_git(main_env, owner, repository_path="services/api", branch="feature/x")
    assert service.repository_web_url == "https://github.com/acme/shop/tree/feature/x/services/api"
    service.repository_url = "ssh://git@example.com/acme/shop.git"
    assert service.repository_web_url == "ssh://git@example.com/acme/shop.git"


# --- the state machine in the database (no worker) -----------------------------------------------


@pytest.mark.django_db
def test_a_git_deploy_builds_first_and_a_newer_deploy_cancels_the_build(main_env, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as first_callbacks:
        service = deploy_git(main_env, owner)
    service.refresh_from_db()
    assert service.status == Service.Status.BUILDING
    assert service.image == ""
    first = service.builds.get()
    assert (first.number, first.status, first.branch, first.created_by) == (1, Build.Status.QUEUED, "main", owner)
    # The build is enqueued; the Deployment is not touched until it succeeds.
    names = [getattr(callback, "func", callback).__qualname__ for callback in first_callbacks]
    assert any("run_build" in str(getattr(cb, "func", cb)) for cb in first_callbacks), names
    assert not any("reconcile_service" in str(getattr(cb, "func", cb)) for cb in first_callbacks), names

    with django_capture_on_commit_callbacks() as callbacks:
        actions.redeploy_service(owner, service)
    first.refresh_from_db()
    assert first.status == Build.Status.CANCELLED and first.finished_at is not None
    assert any("delete_build_job" in str(getattr(cb, "func", cb)) for cb in callbacks)
    second = service.builds.get(number=2)
    assert second.status == Build.Status.QUEUED

    # Switching to an image cancels the build in progress and deploys the image at once.
    form = ServiceForm({**git_data(), "source": "image", "image": "nginx:1.27"}, environment=main_env, service=service)
    assert form.is_valid(), form.errors
    with django_capture_on_commit_callbacks() as callbacks:
        service = actions.deploy_service(owner, main_env, form.cleaned_data, service=service)
    second.refresh_from_db()
    assert second.status == Build.Status.CANCELLED
    assert service.status == Service.Status.DEPLOYING
    assert any("reconcile_service" in str(getattr(cb, "func", cb)) for cb in callbacks)


@pytest.mark.django_db
def test_the_card_shows_building_with_its_elapsed_time(main_env, owner):
    from django.template.loader import render_to_string

    service = deploy_git(main_env, owner, repository_path="web")
    html = render_to_string("services/_card.html", {"service": get_service_for_user(owner, service.public_id)})
    assert "Building · <span data-building-since=" in html
    assert 'href="https://github.com/acme/shop/tree/main/web" target="_blank"' in html


@pytest.mark.django_db
def test_the_log_page_opens_a_build_of_the_service_only(main_env, owner, owner_client, outsider_client):
    service = deploy_git(main_env, owner)
    url = reverse("services:logs", args=[service.public_id])
    page = owner_client.get(f"{url}?build=latest").content.decode()
    assert 'data-build="1"' in page and "Build #1" in page and "branch <code>main</code> at build time" in page
    assert owner_client.get(f"{url}?build=2").status_code == 404
    assert owner_client.get(f"{url}?build=x").status_code == 404
    assert outsider_client.get(f"{url}?build=1").status_code == 404
    assert owner_client.post(f"{url}?build=1").status_code == 405
    running = owner_client.get(url).content.decode()
    assert "data-build=" not in running and ">Build logs</a>" in running


# --- through a real worker, the watcher and the devcluster ---------------------------------------


@pytest.fixture
def build_env(kube_cluster, space, owner) -> Iterator[Any]:
    kube_cluster.registry = "registry.local:5000/ale"
    kube_cluster.build_cpu_millicores = 200
    kube_cluster.build_memory_mib = 256
    kube_cluster.save()
    project = create_project(acting_user=owner, space=space, name="builds", display_name="", cluster=kube_cluster)
    environment = project.environments.get()
    # Applied here rather than waited for: the tests that need no worker start none.
    client_for(kube_cluster).apply(render_environment(environment))
    yield environment
    delete_namespace(environment)


def service_row(service: Service) -> Service:
    return Service.objects.get(pk=service.pk)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_builds_deploys_and_runs_a_repository_then_fails_a_broken_one(
    celery_worker, build_env, watcher, owner, owner_client, outsider_client
):
    kube = client_for(build_env.cluster)
    service = deploy_git(build_env, owner)
    assert service_row(service).status == Service.Status.BUILDING
    build = wait_for(lambda: service.builds.filter(status=Build.Status.BUILDING).first(), what="the build started")
    assert kube.get("batch/v1", "Job", build.job_name, build_env.namespace) is not None

    running = wait_for(
        lambda: (row := service_row(service)).status == Service.Status.RUNNING and row, timeout=30, what="running"
    )
    build.refresh_from_db()
    assert build.status == Build.Status.SUCCEEDED
    assert running.image == build.image
    # The devcluster's builder prints the commit it checked out.
    assert len(build.commit) == 7 and build.finished_at >= build.started_at
    deployment = kube.get("apps/v1", "Deployment", "shop", build_env.namespace)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == build.image

    # A redeploy of a broken repository: the build fails with its last lines, and the service
    # says so while its Deployment keeps the image that worked.
    deploy_git(build_env, owner, service=running, repository_url=FAILING_REPO)
    failed = wait_for(
        lambda: (row := service_row(service)).status == Service.Status.FAILED and row, timeout=30, what="failed"
    )
    assert failed.status_reason.startswith("Build failed:")
    assert "No matching distribution found for ale-build-fails" in failed.status_reason
    second = service.builds.get(number=2)
    assert second.status == Build.Status.FAILED
    assert "error building image" in second.reason
    assert failed.image == build.image
    deployment = kube.get("apps/v1", "Deployment", "shop", build_env.namespace)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == build.image

    # The history on the service page: both builds, who, the result, a link to each log.
    page = owner_client.get(reverse("services:detail", args=[service.public_id])).content.decode()
    assert "Builds" in page
    assert page.count('data-build="') == 2
    assert "Succeeded" in page and "Failed" in page
    assert f"<code>{build.commit}</code> on main" in page
    assert owner.username in page
    assert f"{reverse('services:logs', args=[service.public_id])}?build=1" in page
    assert outsider_client.get(reverse("services:detail", args=[service.public_id])).status_code == 404


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_superseded_build_is_cancelled_and_its_job_deleted(celery_worker, build_env, watcher, owner):
    kube = client_for(build_env.cluster)
    service = deploy_git(build_env, owner)
    first = wait_for(lambda: service.builds.filter(status=Build.Status.BUILDING).first(), what="the first build")
    actions.redeploy_service(owner, service)
    first.refresh_from_db()
    assert first.status == Build.Status.CANCELLED
    wait_for(lambda: kube.get("batch/v1", "Job", first.job_name, build_env.namespace) is None, what="the Job deleted")
    row = wait_for(lambda: (r := service_row(service)).status == Service.Status.RUNNING and r, timeout=30, what="running")
    second = service.builds.get(number=2)
    assert second.status == Build.Status.SUCCEEDED and row.image == second.image
    first.refresh_from_db()
    # The cancelled build stays cancelled whatever its Job did before it went.
    assert first.status == Build.Status.CANCELLED


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.usefixtures("streams_cleaned_up")
async def test_the_build_log_streams_over_the_log_socket(celery_worker, build_env, watcher, owner, outsider):
    from asgiref.sync import sync_to_async

    service = await sync_to_async(deploy_git)(build_env, owner)
    communicator = await socket(f"/ws/services/{service.public_id}/logs/?build=latest&tail=all", user=owner)
    connected, _ = await communicator.connect()
    assert connected
    texts: list[str] = []
    hello = None
    for _ in range(200):
        message = await receive_json(communicator, timeout=10)
        if message["t"] == "hello":
            hello = message
        elif message["t"] == "lines":
            texts += message["lines"]
            await communicator.send_to(text_data=json.dumps({"t": "ack", "seq": message["seq"]}))
            if any("Build succeeded" in line for line in message["lines"]):
                break
    await communicator.disconnect()
    assert hello is not None and all("-build-" in pod["name"] for pod in hello["pods"])
    joined = "\n".join(texts)
    assert "Cloning repository https://github.com/acme/shop.git (ref main)" in joined
    assert "Build succeeded" in joined

    # A build number the service does not have, and an outsider, are refused at the handshake.
    for path, user in (
        (f"/ws/services/{service.public_id}/logs/?build=99", owner),
        (f"/ws/services/{service.public_id}/logs/?build=latest", outsider),
    ):
        refused = await socket(path, user=user)
        connected, _ = await refused.connect()
        assert not connected


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_resync_repairs_a_lost_build_task_and_a_vanished_job(celery_worker, build_env, watcher, owner):
    from datetime import timedelta

    from django.utils import timezone


    long_ago = timezone.now() - timedelta(hours=1)
    service = Service.objects.create(
        environment=build_env, name="lost", source="git", repository_url=REPO, branch="main", port=8000,
        cpu_millicores=100, memory_mib=64, status=Service.Status.BUILDING, status_changed_at=long_ago,
    )  # fmt: skip
    # A build whose run_build never reached a worker (the broker was down at the commit) ...
    lost = Build(service=service, number=1, repository_url=REPO, branch="main")
    lost.job_name, lost.image = job_name_for(service, lost.public_id), image_for(service, 1, lost.public_id)
    lost.save()
    # ... and one that ran once, on another service, whose Job someone deleted.
    other = Service.objects.create(
        environment=build_env, name="vanished", source="git", repository_url=REPO, branch="main", port=8000,
        cpu_millicores=100, memory_mib=64, status=Service.Status.BUILDING, status_changed_at=long_ago,
    )  # fmt: skip
    gone = Build(service=other, number=1, repository_url=REPO, branch="main", status=Build.Status.BUILDING, started_at=long_ago)
    gone.job_name, gone.image = job_name_for(other, gone.public_id), image_for(other, 1, gone.public_id)
    gone.save()
    Build.objects.filter(pk__in=[lost.pk, gone.pk]).update(created_at=long_ago)

    resync_cluster(build_env.cluster)

    running = wait_for(lambda: (r := service_row(service)).status == Service.Status.RUNNING and r, timeout=30, what="running")
    assert running.image == lost.image
    failed = wait_for(lambda: (r := service_row(other)).status == Service.Status.FAILED and r, timeout=20, what="failed")
    assert "deleted before it finished" in failed.status_reason
    assert Build.objects.get(pk=gone.pk).status == Build.Status.FAILED


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_keeps_the_last_ten_builds_and_deletes_the_jobs_of_older_ones(build_env, owner):
    kube = client_for(build_env.cluster)
    service = Service.objects.create(
        environment=build_env, name="many", source="git", repository_url=REPO, branch="main", port=8000,
        cpu_millicores=100, memory_mib=64,
    )  # fmt: skip
    rows = []
    for number in range(1, 13):
        build = Build(service=service, number=number, repository_url=REPO, branch="main", status=Build.Status.SUCCEEDED)
        build.job_name, build.image = job_name_for(service, build.public_id), image_for(service, number, build.public_id)
        build.save()
        rows.append(build)
    oldest, kept = rows[0], rows[2]
    kube.apply([render_build_job(oldest), render_build_job(kept)])

    prune_builds(kube, Service.objects.select_related("environment").get(pk=service.pk))

    assert list(service.builds.order_by("number").values_list("number", flat=True)) == list(range(3, 13))
    assert kube.get("batch/v1", "Job", oldest.job_name, build_env.namespace) is None
    assert kube.get("batch/v1", "Job", kept.job_name, build_env.namespace) is not None


@pytest.mark.integration
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_build_whose_token_secret_is_missing_fails_at_once(celery_worker, build_env, owner):
    kube = client_for(build_env.cluster)
    service = deploy_git(build_env, owner, git_token_secret="GIT_TOKEN")
    failed = wait_for(lambda: (r := service_row(service)).status == Service.Status.FAILED and r, what="failed")
    assert "no secret GIT_TOKEN" in failed.status_reason
    build = service.builds.get()
    assert build.status == Build.Status.FAILED
    assert kube.get("batch/v1", "Job", build.job_name, build_env.namespace) is None
