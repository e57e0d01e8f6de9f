"""Smaller API surfaces ale relies on: discovery, leases, collections, job deadlines, protocol errors."""
from __future__ import annotations

import datetime
import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.contract.support import wait_for


def test_it_serves_discovery(kube_api):
    groups = {g.name: g for g in client.ApisApi(kube_api).get_api_versions().groups}
    for name in ("apps", "batch", "networking.k8s.io", "events.k8s.io", "coordination.k8s.io"):
        assert name in groups
    resources = {r.name: r for r in client.AppsV1Api(kube_api).get_api_resources().resources}
    assert resources["deployments"].namespaced and resources["deployments"].kind == "Deployment"
    assert "deploy" in resources["deployments"].short_names
    assert {"deployments/status", "deployments/scale"} <= set(resources)
    core = {r.name: r for r in client.CoreV1Api(kube_api).get_api_resources().resources}
    assert {"pods/log", "pods/exec", "namespaces", "events", "resourcequotas"} <= set(core)
    assert not core["namespaces"].namespaced
    assert "watch" in core["pods"].verbs


def test_it_stores_leases_for_leader_election(kube_api, namespace):
    leases = client.CoordinationV1Api(kube_api)
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = leases.create_namespaced_lease(namespace, {"metadata": {"name": "ale-watcher"}, "spec": {
        "holderIdentity": "worker-1", "leaseDurationSeconds": 15, "acquireTime": now, "renewTime": now}})
    assert lease.spec.holder_identity == "worker-1" and lease.spec.renew_time
    lease.spec.holder_identity = "worker-2"
    renewed = leases.replace_namespaced_lease("ale-watcher", namespace, lease)
    assert renewed.spec.holder_identity == "worker-2"
    lease.spec.holder_identity = "worker-3"
    with pytest.raises(ApiException) as info:
        leases.replace_namespaced_lease("ale-watcher", namespace, lease)
    assert info.value.status == 409


def test_it_deletes_a_collection_by_label(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    for name, group in [("a", "x"), ("b", "x"), ("c", "y")]:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"group": group}}})
    core.delete_collection_namespaced_config_map(namespace, label_selector="group=x")
    left = [c.metadata.name for c in core.list_namespaced_config_map(namespace, label_selector="group").items]
    assert left == ["c"]


def test_it_fails_a_job_past_its_active_deadline(kube_api, namespace):
    batch = client.BatchV1Api(kube_api)
    batch.create_namespaced_job(namespace, {"metadata": {"name": "slow"}, "spec": {
        "activeDeadlineSeconds": 1, "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "build", "image": "busybox:1.36", "command": ["sleep", "600"]}]}}}})

    def failed_reason():
        job = batch.read_namespaced_job_status("slow", namespace)
        return next((c.reason for c in job.status.conditions or [] if c.type == "Failed" and c.status == "True"), None)

    assert wait_for(failed_reason, timeout=60, message="deadline") == "DeadlineExceeded"


def test_it_refuses_an_unknown_patch_type(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}})
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map("cfg", namespace, {"data": {"a": "1"}}, _content_type="application/json")
    assert info.value.status == 415
    assert json.loads(info.value.body)["reason"] == "UnsupportedMediaType"
