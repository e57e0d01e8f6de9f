"""A YAML apply and a clone through a real Celery worker, Redis and the devcluster: the one
`reconcile_environment` enqueued on commit fans out, and the cluster ends up with every object."""

from __future__ import annotations

import base64

import pytest
from django.core.exceptions import ValidationError

from clusters.client import client_for
from environments import actions, yaml_document
from services.actions import start_all
from spaces.actions import create_project
from tests.fixtures.celery_worker import celery_queue, celery_worker, start_celery_worker  # noqa: F401
from tests.fixtures.clusters import kube_cluster  # noqa: F401
from tests.fixtures.devcluster import kubeconfig_path  # noqa: F401
from tests.waiting import wait_for


pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

FILE = b"""apiVersion: ale/v1
kind: Environment
spec:
  services:
    - {name: web, kind: web, image: 'nginx:1.27', port: 80, resources: {cpu: 0.1, memory: 64Mi}}
    - name: db
      kind: tcp
      image: postgres:16
      port: 5432
      env: [{name: POSTGRES_PASSWORD, secret: DB_PASSWORD}]
      resources: {cpu: 0.1, memory: 64Mi}
"""


def replicas(kube, namespace: str, name: str) -> int | None:
    deployment = kube.get("apps/v1", "Deployment", name, namespace)
    return None if deployment is None else deployment["spec"]["replicas"]


def test_it_carries_a_yaml_file_and_a_clone_to_the_cluster(celery_worker, kube_cluster, space, owner):
    kube = client_for(kube_cluster)
    env = create_project(acting_user=owner, space=space, name="trip", display_name="", cluster=kube_cluster).environments.get()
    actions.set_variables(acting_user=owner, environment=env, values={"DB_PASSWORD": "pw-in-the-cluster"}, is_secret=True)

    result = yaml_document.import_file(owner, env, FILE)
    assert result.created == ["db", "web"]
    wait_for(lambda: replicas(kube, env.namespace, "web") == 1 and replicas(kube, env.namespace, "db") == 1, what="both deployments")
    secret = wait_for(lambda: kube.get("v1", "Secret", "ale-env", env.namespace), what="the ale-env secret")
    assert base64.b64decode(secret["data"]["DB_PASSWORD"]).decode() == "pw-in-the-cluster"

    clone = actions.clone_environment(acting_user=owner, source=env, name="qa", cluster=kube_cluster)
    wait_for(lambda: replicas(kube, clone.namespace, "web") == 0 and replicas(kube, clone.namespace, "db") == 0, what="stopped clones")
    assert actions.missing_secret_keys(clone) == ["DB_PASSWORD"]
    cloned_secret = wait_for(lambda: kube.get("v1", "Secret", "ale-env", clone.namespace), what="the clone's (empty) secret")
    assert not cloned_secret.get("data")

    # Start All waits for the secret the database reads.
    with pytest.raises(ValidationError, match="Cannot start db: this environment has no secret DB_PASSWORD"):
        start_all(owner, clone)
    actions.set_variables(acting_user=owner, environment=clone, values={"DB_PASSWORD": "pw-of-qa"}, is_secret=True)
    assert start_all(owner, clone) == 2
    wait_for(lambda: replicas(kube, clone.namespace, "web") == 1 and replicas(kube, clone.namespace, "db") == 1, what="started clones")
    log = celery_worker.log()
    assert "Traceback" not in log
    assert "pw-in-the-cluster" not in log and "pw-of-qa" not in log
