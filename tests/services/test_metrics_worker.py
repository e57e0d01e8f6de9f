"""The metrics tick through a real Celery worker: each cluster's read is a task of its own, so
a cluster that cannot be reached records its failure while the others are sampled."""

from __future__ import annotations

import pytest

from clusters.client import client_for
from clusters.models import Cluster
from devcluster import kubeconfig_text
from services.metrics import sample_metrics
from services.models import MetricSample, MetricsSource
from spaces.actions import create_project
from tests.services.test_worker import deploy, ready_pods
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_it_samples_each_cluster_in_its_own_task(celery_worker, kube_cluster, space, owner):
    down = Cluster.objects.create(
        name="down", connection=Cluster.Connection.KUBECONFIG, kubeconfig=kubeconfig_text("http://127.0.0.1:1", "x")
    )
    env = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster).environments.get()
    create_project(acting_user=owner, space=space, name="gone", display_name="", cluster=down)
    service = deploy(env, owner, image="loggen:1", replicas="1")
    kube = client_for(kube_cluster)
    wait_for(lambda: ready_pods(kube, service) == 1, timeout=30, what="the service running, through the worker")

    assert sample_metrics.apply().get() == 2
    wait_for(lambda: MetricSample.objects.filter(service=service).exists(), timeout=30,
             what="a sample of the reachable cluster, written by the worker")
    failing = wait_for(
        lambda: MetricsSource.objects.filter(cluster=down, state=MetricsSource.State.FAILING).first(),
        timeout=30, what="the unreachable cluster's failure recorded",
    )
    assert failing.failures == 1
    assert MetricsSource.objects.get(cluster=kube_cluster).state == MetricsSource.State.OK
