"""ResourceQuota mirrors a space's allocation; pods beyond it are refused."""
from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.contract.support import deployment_manifest, wait_for

QUOTA = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "ale-allocation"},
         "spec": {"hard": {"limits.cpu": "1", "limits.memory": "1Gi", "pods": "4"}}}


def _pod(name: str, memory: str | None) -> dict:
    container: dict = {"name": "app", "image": "nginx:1.27"}
    if memory:
        container["resources"] = {"limits": {"cpu": "100m", "memory": memory}}
    return {"metadata": {"name": name}, "spec": {"containers": [container]}}


def _quota_ready(core: client.CoreV1Api, namespace: str):
    quota = core.read_namespaced_resource_quota_status("ale-allocation", namespace)
    return quota if quota.status and quota.status.hard and quota.status.used is not None else None


def test_it_reports_hard_and_used(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(namespace, QUOTA)
    wait_for(lambda: _quota_ready(core, namespace), timeout=60, message="quota status")
    core.create_namespaced_pod(namespace, _pod("small", "256Mi"))
    quota = wait_for(lambda: (lambda q: q if q.status.used.get("pods") == "1" else None)(
        core.read_namespaced_resource_quota("ale-allocation", namespace)), timeout=60, message="usage")
    assert quota.status.hard == {"limits.cpu": "1", "limits.memory": "1Gi", "pods": "4"}
    assert quota.status.used == {"limits.cpu": "100m", "limits.memory": "256Mi", "pods": "1"}


def test_it_refuses_a_pod_beyond_the_quota(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(namespace, QUOTA)
    wait_for(lambda: _quota_ready(core, namespace), timeout=60, message="quota status")
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, _pod("big", "2Gi"))
    status = json.loads(info.value.body)
    assert (info.value.status, status["reason"]) == (403, "Forbidden")
    assert status["message"] == ('pods "big" is forbidden: exceeded quota: ale-allocation, requested: '
                                 'limits.memory=2Gi, used: limits.memory=0, limited: limits.memory=1Gi')
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, _pod("unbounded", None))
    assert info.value.status == 403
    assert json.loads(info.value.body)["message"] == (
        'pods "unbounded" is forbidden: failed quota: ale-allocation: must specify limits.cpu for: app; '
        'limits.memory for: app')


def test_it_records_failed_create_for_a_deployment_beyond_the_quota(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    core.create_namespaced_resource_quota(namespace, QUOTA)
    wait_for(lambda: _quota_ready(core, namespace), timeout=60, message="quota status")
    manifest = deployment_manifest("web", resources={"limits": {"cpu": "100m", "memory": "2Gi"}})
    apps.create_namespaced_deployment(namespace, manifest)
    event = wait_for(lambda: core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ReplicaSet,reason=FailedCreate").items, timeout=60,
                     message="FailedCreate")[0]
    assert event.type == "Warning"
    assert event.message.startswith('Error creating: pods "web-')
    assert "is forbidden: exceeded quota: ale-allocation, requested: limits.memory=2Gi" in event.message
    assert not core.list_namespaced_pod(namespace).items


def test_a_pod_that_goes_frees_its_share(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    quota = {**QUOTA, "spec": {"hard": {"limits.cpu": "1", "limits.memory": "1Gi", "pods": "2"}}}
    core.create_namespaced_resource_quota(namespace, quota)
    wait_for(lambda: _quota_ready(core, namespace), timeout=60, message="quota status")
    core.create_namespaced_pod(namespace, _pod("one", "512Mi"))
    core.create_namespaced_pod(namespace, _pod("two", "256Mi"))
    with pytest.raises(ApiException) as info:
        core.create_namespaced_pod(namespace, _pod("three", "256Mi"))
    assert "exceeded quota: ale-allocation, requested: pods=1, used: pods=2, limited: pods=2" in json.loads(
        info.value.body)["message"]

    core.delete_namespaced_pod("one", namespace, grace_period_seconds=0)
    wait_for(lambda: not [p for p in core.list_namespaced_pod(namespace).items if p.metadata.name == "one"],
             timeout=60, message="pod one gone")
    core.create_namespaced_pod(namespace, _pod("three", "256Mi"))
    used = wait_for(lambda: (lambda q: q.status.used if q.status.used.get("pods") == "2" else None)(
        core.read_namespaced_resource_quota("ale-allocation", namespace)), timeout=60, message="usage")
    assert used == {"limits.cpu": "200m", "limits.memory": "512Mi", "pods": "2"}


def test_a_pod_that_finishes_frees_its_share_while_it_is_still_there(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(namespace, QUOTA)
    wait_for(lambda: _quota_ready(core, namespace), timeout=60, message="quota status")
    pod = _pod("once", "256Mi")
    pod["spec"].update(restartPolicy="Never", containers=[{**pod["spec"]["containers"][0], "image": "crash:1"}])
    core.create_namespaced_pod(namespace, pod)
    wait_for(lambda: core.read_namespaced_pod("once", namespace).status.phase == "Failed", timeout=60,
             message="the pod failed")
    used = wait_for(lambda: (lambda q: q.status.used if q.status.used.get("pods") == "0" else None)(
        core.read_namespaced_resource_quota("ale-allocation", namespace)), timeout=30, message="usage freed")
    assert used == {"limits.cpu": "0", "limits.memory": "0", "pods": "0"}
    assert core.read_namespaced_pod("once", namespace).status.phase == "Failed"
