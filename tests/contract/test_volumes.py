"""PersistentVolumeClaims as ale gives a TCP service its disk: a claim mounted at /data by a Deployment.

Portable to any cluster with a default StorageClass: nothing here assumes the class's name or
whether it binds at once or for the first pod that mounts the claim (kind's WaitForFirstConsumer).
"""
from __future__ import annotations

import re
import secrets

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.contract.support import api_error, claim_manifest, claimed_pod_manifest, db_deployment, wait_for

APPLY = {"field_manager": "ale", "force": True, "_content_type": "application/apply-patch+yaml"}
PROTECTION = "kubernetes.io/pvc-protection"
PREEMPTION = r"preemption: 0/\1 nodes are available: \1 Preemption is not helpful for scheduling\."


def default_class_name(kube_api: client.ApiClient) -> str:
    for sc in client.StorageV1Api(kube_api).list_storage_class().items:
        if (sc.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class") == "true":
            return sc.metadata.name
    pytest.skip("the cluster has no default StorageClass")


def _running(core: client.CoreV1Api, namespace: str, name: str):
    pod = core.read_namespaced_pod(name, namespace)
    return pod if pod.status.phase == "Running" else None


def _bound(core: client.CoreV1Api, namespace: str, name: str):
    claim = core.read_namespaced_persistent_volume_claim(name, namespace)
    return claim if claim.status.phase == "Bound" else None


def _gone(core: client.CoreV1Api, namespace: str, name: str) -> bool:
    return not core.list_namespaced_persistent_volume_claim(namespace, field_selector=f"metadata.name={name}").items



def test_it_applies_lists_watches_patches_and_deletes_claims(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    created = core.patch_namespaced_persistent_volume_claim("data", namespace, claim_manifest("data"), **APPLY)
    assert created.kind == "PersistentVolumeClaim" and created.metadata.uid
    assert any(e.manager == "ale" and e.operation == "Apply" for e in created.metadata.managed_fields)
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("other"))
    listed = core.list_namespaced_persistent_volume_claim(namespace, label_selector="app.kubernetes.io/name=data")
    assert [c.metadata.name for c in listed.items] == ["data"]
    assert core.read_namespaced_persistent_volume_claim("data", namespace).spec.resources.requests == {"storage": "1Gi"}

    seen = []
    for event in watch.Watch().stream(core.list_namespaced_persistent_volume_claim, namespace,
                                      label_selector="app.kubernetes.io/name=data", timeout_seconds=5):
        seen.append((event["type"], event["object"].metadata.name))
        break
    assert seen == [("ADDED", "data")]

    patched = core.patch_namespaced_persistent_volume_claim("data", namespace,
                                                            {"metadata": {"labels": {"tier": "db"}}})
    assert patched.metadata.labels["tier"] == "db"
    answer = core.delete_namespaced_persistent_volume_claim("data", namespace)
    assert answer.metadata.name == "data"
    wait_for(lambda: _gone(core, namespace, "data"), timeout=60, message="an unused claim to go")
    assert [c.metadata.name for c in core.list_namespaced_persistent_volume_claim(namespace).items] == ["other"]


def test_it_reapplies_a_claim_without_changing_it(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.patch_namespaced_persistent_volume_claim("data", namespace, claim_manifest("data"), **APPLY)
    core.create_namespaced_pod(namespace, claimed_pod_manifest("db", "data"))
    wait_for(lambda: _bound(core, namespace, "data"), timeout=120, message="the claim to bind")
    before = core.read_namespaced_persistent_volume_claim("data", namespace)
    again = core.patch_namespaced_persistent_volume_claim("data", namespace, claim_manifest("data"), **APPLY)
    assert again.metadata.resource_version == before.metadata.resource_version
    assert again.spec.volume_name == before.spec.volume_name and again.status.phase == "Bound"


def test_it_defaults_the_class_and_protects_every_claim(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    claim = core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("data"))
    assert claim.spec.storage_class_name == default_class_name(kube_api)
    assert claim.metadata.finalizers == [PROTECTION]
    assert claim.spec.volume_mode == "Filesystem"
    assert claim.status.phase in ("Pending", "Bound")


def test_it_refuses_invalid_claims_with_the_real_messages(kube_api, namespace):
    core = client.CoreV1Api(kube_api)

    def create(spec: dict):
        return lambda: core.create_namespaced_persistent_volume_claim(namespace, {"metadata": {"name": "bad"},
                                                                                  "spec": spec})

    status, body = api_error(create({"resources": {"requests": {"storage": "1Gi"}}}))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"] == ('PersistentVolumeClaim "bad" is invalid: spec.accessModes: Required value: at least 1 '
                               'access mode is required')
    assert body["details"]["kind"] == "PersistentVolumeClaim" and body["details"]["name"] == "bad"
    assert body["details"]["causes"] == [{"reason": "FieldValueRequired", "field": "spec.accessModes",
                                          "message": "Required value: at least 1 access mode is required"}]
    _, body = api_error(create({"accessModes": ["ReadWriteOnce"]}))
    assert body["message"] == 'PersistentVolumeClaim "bad" is invalid: spec.resources[storage]: Required value'
    _, body = api_error(create({"accessModes": ["ReadWriteSometimes"], "resources": {"requests": {"storage": "0"}}}))
    assert body["message"] == (
        'PersistentVolumeClaim "bad" is invalid: [spec.accessModes: Unsupported value: "ReadWriteSometimes": '
        'supported values: "ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod", '
        'spec.resources[storage]: Invalid value: "0": must be greater than zero]')
    _, body = api_error(create({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce"],
                               "resources": {"requests": {"storage": "1Gi"}}}))
    assert body["message"] == ('PersistentVolumeClaim "bad" is invalid: spec.accessModes: Forbidden: may not use '
                               'ReadWriteOncePod with other access modes')
    assert not core.list_namespaced_persistent_volume_claim(namespace).items


def test_it_runs_a_deployment_that_mounts_a_claim(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    core.patch_namespaced_persistent_volume_claim("db-data", namespace, claim_manifest("db-data", "2Gi"), **APPLY)
    apps.patch_namespaced_deployment("db", namespace, db_deployment("db", "db-data"), **APPLY)
    wait_for(lambda: (apps.read_namespaced_deployment_status("db", namespace).status.available_replicas or 0) == 1,
             timeout=180, message="the deployment to become available")
    claim = wait_for(lambda: _bound(core, namespace, "db-data"), timeout=60, message="the claim to bind")
    assert claim.spec.volume_name
    assert claim.status.capacity["storage"] == "2Gi"
    assert claim.status.access_modes == ["ReadWriteOnce"]
    pod = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/name=db").items[0]
    assert pod.status.phase == "Running"
    assert pod.spec.volumes[0].persistent_volume_claim.claim_name == "db-data"


def test_it_keeps_a_pod_pending_until_its_claim_exists(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, claimed_pod_manifest("db", "data"))

    def unschedulable():
        pod = core.read_namespaced_pod("db", namespace)
        return next((c for c in pod.status.conditions or [] if c.type == "PodScheduled" and c.status == "False"), None)

    condition = wait_for(unschedulable, timeout=60, message="PodScheduled=False")
    pattern = r'0/(\d+) nodes are available: persistentvolumeclaim "data" not found\. ' + PREEMPTION
    assert condition.reason == "Unschedulable" and re.fullmatch(pattern, condition.message)
    pod = core.read_namespaced_pod("db", namespace)
    assert pod.status.phase == "Pending" and not pod.spec.node_name
    event = wait_for(lambda: core.list_namespaced_event(
        namespace, field_selector="involvedObject.name=db,reason=FailedScheduling").items, timeout=60,
                     message="FailedScheduling")[0]
    assert event.type == "Warning" and re.fullmatch(pattern, event.message)

    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("data"))
    pod = wait_for(lambda: _running(core, namespace, "db"), timeout=180, message="the pod to run")
    assert pod.spec.node_name
    assert _bound(core, namespace, "data")


def test_it_holds_a_claim_in_use_until_its_pod_is_gone(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("data"))
    core.create_namespaced_pod(namespace, claimed_pod_manifest("db", "data"))
    wait_for(lambda: _running(core, namespace, "db"), timeout=180, message="the pod to run")
    answer = core.delete_namespaced_persistent_volume_claim("data", namespace)
    assert answer.metadata.deletion_timestamp is not None
    assert answer.metadata.finalizers == [PROTECTION]
    terminating = core.read_namespaced_persistent_volume_claim("data", namespace)
    assert terminating.metadata.deletion_timestamp and terminating.status.phase == "Bound"
    # A terminating claim is never handed to a new pod.
    core.create_namespaced_pod(namespace, claimed_pod_manifest("late", "data"))
    late = wait_for(lambda: next((c for c in core.read_namespaced_pod("late", namespace).status.conditions or []
                                  if c.type == "PodScheduled" and c.status == "False"), None), timeout=60,
                    message="the late pod to be unschedulable")
    assert re.fullmatch(r'0/(\d+) nodes are available: persistentvolumeclaim "data" is being deleted\. '
                        + PREEMPTION, late.message)
    assert _running(core, namespace, "db")
    core.delete_namespaced_pod("db", namespace, grace_period_seconds=0)
    wait_for(lambda: _gone(core, namespace, "data"), timeout=120, message="the released claim to go")


def test_it_refuses_to_change_a_bound_claim_except_to_grow_it(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("data", "2Gi"))
    core.create_namespaced_pod(namespace, claimed_pod_manifest("db", "data"))
    wait_for(lambda: _bound(core, namespace, "data"), timeout=120, message="the claim to bind")
    status, body = api_error(lambda: core.patch_namespaced_persistent_volume_claim(
        "data", namespace, {"spec": {"accessModes": ["ReadWriteMany"]}}))
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith(
        'PersistentVolumeClaim "data" is invalid: spec: Forbidden: spec is immutable after creation except '
        'resources.requests and volumeAttributesClassName for bound claims\n')
    status, body = api_error(lambda: core.patch_namespaced_persistent_volume_claim(
        "data", namespace, {"spec": {"resources": {"requests": {"storage": "1Gi"}}}}))
    assert status == 422
    # Clusters before RecoverVolumeExpansionFailure (on by default from 1.32) word it the older way.
    assert body["message"] in (
        'PersistentVolumeClaim "data" is invalid: spec.resources.requests.storage: Forbidden: field can not be less '
        'than status.capacity',
        'PersistentVolumeClaim "data" is invalid: spec.resources.requests.storage: Forbidden: field can not be less '
        'than previous value')
    assert core.read_namespaced_persistent_volume_claim("data", namespace).spec.resources.requests["storage"] == "2Gi"


def test_it_counts_claims_against_the_quota(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_resource_quota(namespace, {"metadata": {"name": "ale-allocation"}, "spec": {
        "hard": {"requests.storage": "2Gi", "persistentvolumeclaims": "3", "count/persistentvolumeclaims": "3"}}})
    wait_for(lambda: core.read_namespaced_resource_quota("ale-allocation", namespace).status.used is not None,
             timeout=60, message="quota status")
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("data", "1536Mi"))
    quota = wait_for(lambda: (lambda q: q if (q.status.used or {}).get("persistentvolumeclaims") == "1" else None)(
        core.read_namespaced_resource_quota("ale-allocation", namespace)), timeout=60, message="usage")
    assert quota.status.used == {"requests.storage": "1536Mi", "persistentvolumeclaims": "1",
                                 "count/persistentvolumeclaims": "1"}
    status, body = api_error(lambda: core.create_namespaced_persistent_volume_claim(
        namespace, claim_manifest("more", "1Gi")))
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('persistentvolumeclaims "more" is forbidden: exceeded quota: ale-allocation, '
                               'requested: requests.storage=1Gi, used: requests.storage=1536Mi, '
                               'limited: requests.storage=2Gi')
    core.create_namespaced_persistent_volume_claim(namespace, claim_manifest("small", "512Mi"))


def test_it_deletes_claims_with_their_namespace(kube_api):
    core = client.CoreV1Api(kube_api)
    name = f"ale-test-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name, "labels": {"ale.test/owner": "pytest"}}})
    try:
        core.create_namespaced_persistent_volume_claim(name, claim_manifest("data"))
        core.create_namespaced_pod(name, claimed_pod_manifest("db", "data"))
        wait_for(lambda: _running(core, name, "db"), timeout=180, message="the pod to run")
    finally:
        core.delete_namespace(name)

    def namespace_gone() -> bool:
        try:
            core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(namespace_gone, timeout=180, message="the namespace and its claim to go")
    assert not [c for c in core.list_persistent_volume_claim_for_all_namespaces().items
                if c.metadata.namespace == name]
