"""The environment tasks against the devcluster: the namespace, and deleting it with the rows."""

from __future__ import annotations

import logging

import pytest

from clusters.client import client_for
from environments.actions import delete_environment
from environments.models import Environment
from environments.tasks import delete_environment as delete_environment_task
from environments.tasks import reconcile_environment
from services import actions
from services.forms import ServiceForm
from services.models import Service
from services.tasks import reconcile_service
from spaces.actions import create_project
from spaces.models import Project
from tests.factories import make_environment
from tests.fixtures.clusters import fault_cluster, kube_cluster  # noqa: F401
from tests.fixtures.devcluster import devcluster, kubeconfig_path  # noqa: F401

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(kube_cluster, space, owner) -> Project:
    return create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster)


@pytest.fixture
def kube(kube_cluster):
    return client_for(kube_cluster)


def run(task, *args) -> str:
    return task.apply(args=list(args)).get()


def deploy_web(env, owner) -> Service:
    form = ServiceForm(
        {"name": "web", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
         "memory": "64Mi", "replicas": "1", "capacity": "on_demand"},
        environment=env,
    )
    assert form.is_valid(), form.errors
    service = actions.deploy_service(owner, env, form.cleaned_data)
    assert run(reconcile_service, service.pk) == "applied"
    return service


def test_it_creates_the_isolated_namespace(project, kube):
    env = project.environments.get()
    assert run(reconcile_environment, env.pk) == "applied"
    assert kube.get("v1", "Namespace", env.namespace)["metadata"]["labels"]["ale.dev/project"] == project.public_id
    assert kube.get("networking.k8s.io/v1", "NetworkPolicy", "ale-isolation", env.namespace) is not None


def test_it_does_not_recreate_a_namespace_being_deleted(project, owner, kube):
    env = project.environments.get()
    delete_environment(acting_user=owner, environment=env)
    assert run(reconcile_environment, env.pk) == "deleting"
    assert kube.get("v1", "Namespace", env.namespace) is None


def test_it_deletes_the_namespace_then_the_environment(project, owner, kube):
    main = project.environments.get()
    qa = make_environment(project, by=owner, name="qa")
    qa.cluster = main.cluster
    qa.save()
    service = deploy_web(qa, owner)
    assert delete_environment(acting_user=owner, environment=qa) == project
    assert run(delete_environment_task, qa.pk) == "deleted"
    assert kube.get("v1", "Namespace", qa.namespace) is None
    assert kube.get("apps/v1", "Deployment", "web", qa.namespace) is None
    assert not Environment.objects.filter(pk=qa.pk).exists()
    assert not Service.objects.filter(pk=service.pk).exists()
    assert Project.objects.filter(pk=project.pk).exists()


def test_it_deletes_the_project_with_its_last_environment(project, owner, kube):
    main = project.environments.get()
    deploy_web(main, owner)
    assert delete_environment(acting_user=owner, environment=main) is None
    assert run(delete_environment_task, main.pk) == "deleted with project"
    assert kube.get("v1", "Namespace", main.namespace) is None
    assert not Project.objects.filter(pk=project.pk).exists()


def test_it_deletes_an_environment_whose_namespace_never_existed(project, owner):
    main = project.environments.get()
    delete_environment(acting_user=owner, environment=main)
    assert run(delete_environment_task, main.pk) == "deleted with project"


def test_it_never_deletes_an_environment_nobody_asked_to_delete(project, owner, kube):
    main = project.environments.get()
    run(reconcile_environment, main.pk)
    assert run(delete_environment_task, main.pk) == "not deleting"
    assert kube.get("v1", "Namespace", main.namespace) is not None
    assert Environment.objects.filter(pk=main.pk).exists()


def test_it_returns_quietly_when_the_environment_is_gone():
    assert run(delete_environment_task, 987654321) == "gone"
    assert run(reconcile_environment, 987654321) == "gone"


def test_it_retries_a_delete_the_cluster_throttles(fault_cluster, devcluster, space, owner, caplog):
    project = create_project(acting_user=owner, space=space, name="faulty", display_name="", cluster=fault_cluster)
    env = project.environments.get()
    run(reconcile_environment, env.pk)
    devcluster.faults.throttle(retry_after=1, count=1, path=f"/namespaces/{env.namespace}$", method="DELETE")
    delete_environment(acting_user=owner, environment=env)
    with caplog.at_level(logging.INFO, logger="services.tasks"):
        assert run(delete_environment_task, env.pk) == "deleted with project"
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert client_for(fault_cluster).get("v1", "Namespace", env.namespace) is None
