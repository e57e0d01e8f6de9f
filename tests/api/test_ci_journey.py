"""What a CI pipeline does, over HTTP against a live server, with a real Celery worker, the
devcluster and the watcher writing statuses: a deploy key deploys a new image and waits for
its revision to run; an image that crash-loops answers the failure and the card's reason."""

from __future__ import annotations


import pytest
import requests

from clusters.client import client_for
from spaces.actions import create_project
from tests.api.helpers import make_service, make_token
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_it_deploys_and_waits_like_a_ci_job(live_server, celery_worker, kube_cluster, watcher, space, owner, member_client):
    project = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster)
    env = project.environments.get()
    wait_for(lambda: client_for(kube_cluster).get("v1", "Namespace", env.namespace), what="the namespace")
    service = make_service(env, owner, image="nginx:1.27")

    # A member makes the deploy key on the service page.
    page = member_client.post(f"/services/{service.public_id}/deploy-keys/", {"name": "GitHub Actions", "expires_in_days": "30"})
    assert page.status_code == 302
    headers = {"Authorization": f"Bearer {member_client.get(page['Location']).context['new_token']}"}
    base = f"{live_server.url}/api/v1/services/{service.public_id}"

    # The three lines of the README: deploy, wait, read the outcome.
    deployed = requests.post(f"{base}/deploy", json={"image": "nginx:1.28"}, headers={**headers, "Idempotency-Key": "run-1"}, timeout=30)
    assert deployed.status_code == 201, deployed.text
    revision = deployed.json()["revision"]
    assert revision == 2
    waited = requests.get(base, params={"wait_for_revision": revision, "timeout": 90}, headers=headers, timeout=120).json()
    assert waited["wait"] == {"revision": 2, "outcome": "running", "reason": ""}, waited
    assert waited["status"] == "running" and waited["image"] == "nginx:1.28"

    # The retried step of a flaky runner: the same key creates no third revision.
    again = requests.post(f"{base}/deploy", json={"image": "nginx:1.28"}, headers={**headers, "Idempotency-Key": "run-1"}, timeout=30)
    assert again.json()["revision"] == 2 and service.revisions.count() == 2

    crashed = requests.post(f"{base}/deploy", json={"image": "example.com/crash:1"}, headers=headers, timeout=30).json()
    waited = requests.get(base, params={"wait_for_revision": crashed["revision"], "timeout": 90}, headers=headers, timeout=120).json()
    assert waited["wait"]["outcome"] == "failed", waited
    assert waited["wait"]["reason"].startswith("The container keeps crashing")
    assert waited["reason"] == waited["wait"]["reason"]

    # The key reaches nothing else.
    assert requests.post(f"{base}/stop", headers=headers, timeout=30).status_code == 403
    assert "Traceback" not in celery_worker.log()


def test_it_reads_a_services_log(live_server, celery_worker, kube_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster)
    env = project.environments.get()
    kube = client_for(kube_cluster)
    wait_for(lambda: kube.get("v1", "Namespace", env.namespace), what="the namespace")
    service = make_service(env, owner, image="nginx:1.27")
    wait_for(lambda: kube.list("v1", "Pod", namespace=env.namespace)[0], what="a pod")
    headers = {"Authorization": f"Bearer {make_token(owner, permission='read')}"}
    url = f"{live_server.url}/api/v1/services/{service.public_id}/logs"
    response = wait_for(lambda: (r := requests.get(url, params={"tail": 5}, headers=headers, timeout=30)).text and r, what="log lines")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
    assert 0 < len(response.text.splitlines()) <= 5
    labelled = requests.get(url, params={"pod": "*", "tail": 1}, headers=headers, timeout=30).text
    assert labelled.startswith("[")
    refused = requests.get(url, params={"pod": "nope"}, headers=headers, timeout=30)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "pod"
