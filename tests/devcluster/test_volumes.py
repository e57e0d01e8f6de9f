"""The devcluster's storage: its default class binds claims at once, grows them, and holds pods that wait for one.

Real clusters differ here by configuration (binding mode, expansion support), so these pin down the
devcluster's own choice: kind's `standard` class, binding immediately and allowing expansion.
"""
from __future__ import annotations

import json

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.contract.support import claim_manifest, claimed_pod_manifest, db_deployment, wait_for

APPLY = {"field_manager": "ale", "force": True, "_content_type": "application/apply-patch+yaml"}

UNBOUND = ("0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are "
           "available: 1 Preemption is not helpful for scheduling.")



def _claim(core: client.CoreV1Api, ns: str, name: str):
    return core.read_namespaced_persistent_volume_claim(name, ns)


def _bound(core: client.CoreV1Api, ns: str, name: str):
    claim = _claim(core, ns, name)
    return claim if claim.status.phase == "Bound" else None


def _error(call) -> tuple[int, str]:
    with pytest.raises(ApiException) as info:
        call()
    return info.value.status, json.loads(info.value.body)["message"]


def test_it_serves_a_default_class_that_allows_expansion(devcluster_api):
    classes = client.StorageV1Api(devcluster_api).list_storage_class().items
    assert [sc.metadata.name for sc in classes] == ["standard"]
    standard = classes[0]
    assert standard.metadata.annotations == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert standard.allow_volume_expansion is True
    assert (standard.provisioner, standard.reclaim_policy, standard.volume_binding_mode) == (
        "rancher.io/local-path", "Delete", "Immediate")
    resources = {r.name: r for r in client.CoreV1Api(devcluster_api).get_api_resources().resources}
    pvc = resources["persistentvolumeclaims"]
    assert pvc.namespaced and pvc.kind == "PersistentVolumeClaim" and pvc.short_names == ["pvc"]
    assert "persistentvolumeclaims/status" in resources


def test_it_binds_a_claim_at_once(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    created = core.create_namespaced_persistent_volume_claim(ns, claim_manifest("data", "3Gi"))
    assert created.status.phase == "Pending" and created.spec.storage_class_name == "standard"
    claim = wait_for(lambda: _bound(core, ns, "data"), timeout=10, message="the claim to bind")
    assert claim.spec.volume_name == f"pvc-{created.metadata.uid}"
    assert claim.status.capacity == {"storage": "3Gi"}
    assert claim.status.access_modes == ["ReadWriteOnce"]
    assert claim.metadata.annotations["pv.kubernetes.io/bind-completed"] == "yes"
    assert claim.metadata.annotations["volume.kubernetes.io/storage-provisioner"] == "rancher.io/local-path"
    reasons = [e.reason for e in core.list_namespaced_event(ns, field_selector="involvedObject.name=data").items]
    assert reasons == ["Provisioning", "ProvisioningSucceeded"]
    named = core.create_namespaced_persistent_volume_claim(ns, claim_manifest("named", storageClassName="standard"))
    assert named.spec.storage_class_name == "standard"
    wait_for(lambda: _bound(core, ns, "named"), timeout=10, message="a claim naming the default class to bind")


def test_it_watches_a_claim_become_bound(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    start = core.list_namespaced_persistent_volume_claim(ns).metadata.resource_version
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("data"))
    phases = []
    for event in watch.Watch().stream(core.list_namespaced_persistent_volume_claim, ns, resource_version=start,
                                      timeout_seconds=10):
        phases.append((event["type"], event["object"].status.phase))
        if event["object"].status.phase == "Bound":
            break
    assert phases[0] == ("ADDED", "Pending") and phases[-1] == ("MODIFIED", "Bound")


def test_it_leaves_a_claim_of_a_missing_class_pending_until_the_class_exists(devcluster_api, ns):
    core, storage = client.CoreV1Api(devcluster_api), client.StorageV1Api(devcluster_api)
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("data", storageClassName="fast"))
    event = wait_for(lambda: core.list_namespaced_event(
        ns, field_selector="involvedObject.name=data,reason=ProvisioningFailed").items, timeout=10,
                     message="ProvisioningFailed")[0]
    assert event.type == "Warning"
    assert event.message == 'storageclass.storage.k8s.io "fast" not found'
    assert event.source.component == "persistentvolume-controller"
    assert _claim(core, ns, "data").status.phase == "Pending"
    assert not _claim(core, ns, "data").spec.volume_name

    core.create_namespaced_pod(ns, claimed_pod_manifest("db", "data"))
    pod = wait_for(lambda: (lambda p: p if p.status.conditions else None)(core.read_namespaced_pod("db", ns)),
                   timeout=10, message="the scheduler's verdict")
    condition = next(c for c in pod.status.conditions if c.type == "PodScheduled")
    assert (condition.status, condition.reason, condition.message) == ("False", "Unschedulable", UNBOUND)
    failed = core.list_namespaced_event(ns, field_selector="involvedObject.name=db,reason=FailedScheduling").items
    assert [e.message for e in failed] == [UNBOUND]
    assert failed[0].reporting_component == "default-scheduler" and failed[0].type == "Warning"

    storage.create_storage_class({"metadata": {"name": f"fast-{ns}"}, "provisioner": "rancher.io/local-path"})
    try:
        assert _claim(core, ns, "data").status.phase == "Pending"
        storage.create_storage_class({"metadata": {"name": "fast"}, "provisioner": "rancher.io/local-path"})
        wait_for(lambda: _bound(core, ns, "data"), timeout=10, message="the claim to bind once its class exists")
        pod = wait_for(lambda: (lambda p: p if p.status.phase == "Running" else None)(
            core.read_namespaced_pod("db", ns)), timeout=20, message="the waiting pod to run")
        assert {c.type: c.status for c in pod.status.conditions}["PodScheduled"] == "True"
    finally:
        storage.delete_storage_class("fast")
        storage.delete_storage_class(f"fast-{ns}")


def test_it_leaves_a_claim_without_a_class_pending(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("data", storageClassName=""))
    event = wait_for(lambda: core.list_namespaced_event(
        ns, field_selector="involvedObject.name=data,reason=FailedBinding").items, timeout=10,
                     message="FailedBinding")[0]
    assert event.message == "no persistent volumes available for this claim and no storage class is set"
    claim = _claim(core, ns, "data")
    assert claim.spec.storage_class_name == "" and claim.status.phase == "Pending"


def test_it_grows_a_bound_claim_and_refuses_to_shrink_it(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.patch_namespaced_persistent_volume_claim("data", ns, claim_manifest("data", "1Gi"), **APPLY)
    wait_for(lambda: _bound(core, ns, "data"), timeout=10, message="the claim to bind")
    # ale grows a disk by applying the manifest again with a larger request.
    core.patch_namespaced_persistent_volume_claim("data", ns, claim_manifest("data", "5Gi"), **APPLY)
    claim = wait_for(lambda: (lambda c: c if c.status.capacity == {"storage": "5Gi"} else None)(
        _claim(core, ns, "data")), timeout=10, message="the capacity to grow")
    assert claim.spec.resources.requests == {"storage": "5Gi"} and claim.status.phase == "Bound"
    status, message = _error(lambda: core.patch_namespaced_persistent_volume_claim(
        "data", ns, claim_manifest("data", "2Gi"), **APPLY))
    assert status == 422
    assert message == ('PersistentVolumeClaim "data" is invalid: spec.resources.requests.storage: Forbidden: field '
                       'can not be less than status.capacity')
    status, message = _error(lambda: core.patch_namespaced_persistent_volume_claim(
        "data", ns, {"spec": {"storageClassName": "other"}}))
    assert status == 422
    assert message.startswith('PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after '
                              'creation except resources.requests and volumeAttributesClassName for bound claims\n')
    assert "StorageClassName" in message
    # The same quantity spelled differently is no change at all.
    same = core.patch_namespaced_persistent_volume_claim("data", ns, {"spec": {"resources": {"requests": {
        "storage": "5120Mi"}}}})
    assert same.status.capacity == {"storage": "5Gi"}


def test_it_refuses_to_resize_a_pending_claim(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("data", storageClassName="absent"))
    status, message = _error(lambda: core.patch_namespaced_persistent_volume_claim(
        "data", ns, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}}))
    assert status == 422
    assert message.startswith('PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after '
                              'creation except resources.requests and volumeAttributesClassName for bound claims\n')


def test_it_refuses_to_grow_a_claim_past_the_quota(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "ale-allocation"},
                                               "spec": {"hard": {"requests.storage": "2Gi"}}})
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("data", "1Gi"))
    wait_for(lambda: _bound(core, ns, "data"), timeout=10, message="the claim to bind")
    status, message = _error(lambda: core.patch_namespaced_persistent_volume_claim(
        "data", ns, {"spec": {"resources": {"requests": {"storage": "3Gi"}}}}))
    assert status == 403
    assert message == ('persistentvolumeclaims "data" is forbidden: exceeded quota: ale-allocation, requested: '
                       'requests.storage=2Gi, used: requests.storage=1Gi, limited: requests.storage=2Gi')
    core.patch_namespaced_persistent_volume_claim("data", ns, {"spec": {"resources": {"requests": {"storage": "2Gi"}}}})
    quota = wait_for(lambda: (lambda q: q if (q.status.used or {}).get("requests.storage") == "2Gi" else None)(
        core.read_namespaced_resource_quota("ale-allocation", ns)), timeout=10, message="the grown usage")
    assert quota.status.hard == {"requests.storage": "2Gi"}


def test_it_starts_a_deployment_once_its_claim_is_created(devcluster_api, ns):
    core, apps = client.CoreV1Api(devcluster_api), client.AppsV1Api(devcluster_api)
    apps.patch_namespaced_deployment("db", ns, db_deployment("db", "db-data"), **APPLY)
    pod = wait_for(lambda: [p for p in core.list_namespaced_pod(ns).items if p.status.conditions], timeout=10,
                   message="an unschedulable pod")[0]
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    assert pod.status.conditions[0].message.startswith(
        '0/1 nodes are available: persistentvolumeclaim "db-data" not found.')
    core.patch_namespaced_persistent_volume_claim("db-data", ns, claim_manifest("db-data"), **APPLY)
    wait_for(lambda: (apps.read_namespaced_deployment_status("db", ns).status.available_replicas or 0) == 1,
             timeout=20, message="the deployment to become available")
    assert core.read_namespaced_pod(pod.metadata.name, ns).status.phase == "Running"


def test_it_removes_an_unused_claim_at_once_and_keeps_a_used_one(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    for name in ("idle", "busy"):
        core.create_namespaced_persistent_volume_claim(ns, claim_manifest(name))
    core.create_namespaced_pod(ns, claimed_pod_manifest("db", "busy"))
    wait_for(lambda: core.read_namespaced_pod("db", ns).status.phase == "Running", timeout=20,
             message="the pod to run")
    core.delete_namespaced_persistent_volume_claim("idle", ns)
    core.delete_namespaced_persistent_volume_claim("busy", ns)
    wait_for(lambda: [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(ns).items] == ["busy"],
             timeout=10, message="the idle claim to go")
    busy = _claim(core, ns, "busy")
    assert busy.metadata.deletion_timestamp and busy.metadata.finalizers == ["kubernetes.io/pvc-protection"]
    # A pod that finished no longer holds the claim; here the pod is deleted, which releases it too.
    core.delete_namespaced_pod("db", ns)
    wait_for(lambda: not core.list_namespaced_persistent_volume_claim(ns).items, timeout=20,
             message="the released claim to go")


def test_it_counts_claims_per_storage_class(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_resource_quota(ns, {"metadata": {"name": "per-class"}, "spec": {"hard": {
        "standard.storageclass.storage.k8s.io/requests.storage": "1Gi",
        "standard.storageclass.storage.k8s.io/persistentvolumeclaims": "5"}}})
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("a", "1Gi"))
    status, message = _error(lambda: core.create_namespaced_persistent_volume_claim(ns, claim_manifest("b", "1Gi")))
    assert status == 403
    assert message == ('persistentvolumeclaims "b" is forbidden: exceeded quota: per-class, requested: '
                       'standard.storageclass.storage.k8s.io/requests.storage=1Gi, used: '
                       'standard.storageclass.storage.k8s.io/requests.storage=1Gi, limited: '
                       'standard.storageclass.storage.k8s.io/requests.storage=1Gi')
    # A claim of another class is not charged to this one.
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("c", "1Gi", storageClassName=""))


def test_it_requires_a_claim_name_in_a_pod_volume(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    manifest = claimed_pod_manifest("db", "")
    status, message = _error(lambda: core.create_namespaced_pod(ns, manifest))
    assert status == 422
    assert message == 'Pod "db" is invalid: spec.volumes[0].persistentVolumeClaim.claimName: Required value'
