"""Server-side apply, the way ale writes every manifest (fieldManager=ale, force)."""
from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.contract.support import deployment_manifest, stable_resource_version, wait_for

APPLY = "application/apply-patch+yaml"


def apply(fn, name: str, namespace: str, body: dict, manager: str = "ale", force: bool | None = True):
    kwargs = {"field_manager": manager, "_content_type": APPLY}
    if force is not None:
        kwargs["force"] = force
    return fn(name, namespace, body, **kwargs)


def test_it_applies_a_deployment_and_reapplying_changes_nothing(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    manifest = deployment_manifest("web", replicas=1, env=[{"name": "MODE", "value": "web"}])
    created = apply(apps.patch_namespaced_deployment, "web", namespace, manifest)
    assert created.metadata.generation == 1
    assert any(e.manager == "ale" and e.operation == "Apply" for e in created.metadata.managed_fields)
    rv = stable_resource_version(lambda: apps.read_namespaced_deployment("web", namespace))
    again = apply(apps.patch_namespaced_deployment, "web", namespace, manifest)
    assert again.metadata.resource_version == rv
    assert again.metadata.generation == 1


@pytest.mark.parametrize("kind", ["service", "secret", "network_policy", "ingress", "resource_quota"])
def test_it_applies_ale_manifests_idempotently(kube_api, namespace, kind):
    core, net = client.CoreV1Api(kube_api), client.NetworkingV1Api(kube_api)
    manifests = {
        "service": (core.patch_namespaced_service, core.read_namespaced_service, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
            "spec": {"selector": {"app.kubernetes.io/name": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        "secret": (core.patch_namespaced_secret, core.read_namespaced_secret, {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ale-env"}, "type": "Opaque",
            "data": {"DATABASE_URL": "cG9zdGdyZXM6Ly8="}}),
        "network_policy": (net.patch_namespaced_network_policy, net.read_namespaced_network_policy, {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "same-namespace"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}}),
        "ingress": (net.patch_namespaced_ingress, net.read_namespaced_ingress, {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "web"},
            "spec": {"rules": [{"host": "web.example.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}}),
        "resource_quota": (core.patch_namespaced_resource_quota, core.read_namespaced_resource_quota, {
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "ale-allocation"},
            "spec": {"hard": {"limits.cpu": "2", "limits.memory": "2Gi", "pods": "10"}}}),
    }
    patch_fn, read_fn, manifest = manifests[kind]
    name = manifest["metadata"]["name"]
    first = apply(patch_fn, name, namespace, manifest)
    assert first.metadata.name == name
    rv = stable_resource_version(lambda: read_fn(name, namespace))
    again = apply(patch_fn, name, namespace, manifest)
    assert again.metadata.resource_version == rv


def test_it_defaults_what_the_manifest_leaves_out(kube_api, namespace):
    core, net = client.CoreV1Api(kube_api), client.NetworkingV1Api(kube_api)
    svc = apply(core.patch_namespaced_service, "web", namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    assert svc.spec.type == "ClusterIP"
    assert svc.spec.cluster_ip and svc.spec.cluster_ip == svc.spec.cluster_ips[0]
    assert svc.spec.ports[0].protocol == "TCP"
    assert svc.spec.ports[0].target_port == 80
    policy = apply(net.patch_namespaced_network_policy, "deny", namespace, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
        "spec": {"podSelector": {}}})
    assert policy.spec.policy_types == ["Ingress"]


def test_it_reports_conflicts_between_managers_unless_forced(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    apply(apps.patch_namespaced_deployment, "web", namespace, deployment_manifest("web", replicas=1))
    other = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}}
    with pytest.raises(ApiException) as info:
        apply(apps.patch_namespaced_deployment, "web", namespace, other, manager="autoscaler", force=None)
    assert info.value.status == 409
    status = json.loads(info.value.body)
    assert status["reason"] == "Conflict"
    assert [c["field"] for c in status["details"]["causes"]] == [".spec.replicas"]
    assert status["details"]["causes"][0]["message"] == 'conflict with "ale"'
    forced = apply(apps.patch_namespaced_deployment, "web", namespace, other, manager="autoscaler", force=True)
    assert forced.spec.replicas == 2
    ale_entry = next(e for e in forced.metadata.managed_fields if e.manager == "ale")
    assert "f:replicas" not in ale_entry.fields_v1["f:spec"]


def test_it_lets_two_managers_share_a_value_they_agree_on(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    apply(apps.patch_namespaced_deployment, "web", namespace, deployment_manifest("web", replicas=1))
    same = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 1}}
    shared = apply(apps.patch_namespaced_deployment, "web", namespace, same, manager="other", force=None)
    owners = [e.manager for e in shared.metadata.managed_fields if "f:replicas" in (e.fields_v1 or {}).get("f:spec", {})]
    assert sorted(owners) == ["ale", "other"]


def test_it_removes_fields_a_manager_stops_applying(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg", "labels": {"a": "1", "b": "2"}},
            "data": {"x": "1", "y": "2"}}
    apply(core.patch_namespaced_config_map, "cfg", namespace, body)
    body["metadata"]["labels"] = {"a": "1"}
    body["data"] = {"x": "1"}
    after = apply(core.patch_namespaced_config_map, "cfg", namespace, body)
    assert after.metadata.labels == {"a": "1"}
    assert after.data == {"x": "1"}


def test_it_keeps_fields_another_manager_still_owns(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    apply(core.patch_namespaced_config_map, "cfg", namespace,
          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"x": "1"}})
    core.patch_namespaced_config_map("cfg", namespace, {"data": {"y": "2"}}, field_manager="editor")
    after = apply(core.patch_namespaced_config_map, "cfg", namespace,
                  {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"x": "1"}})
    assert after.data == {"x": "1", "y": "2"}


def test_it_removes_a_container_env_entry_by_key(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    env = [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    apply(apps.patch_namespaced_deployment, "web", namespace, deployment_manifest("web", env=env))
    after = apply(apps.patch_namespaced_deployment, "web", namespace, deployment_manifest("web", env=env[:1]))
    assert [(e.name, e.value) for e in after.spec.template.spec.containers[0].env] == [("A", "1")]
    assert after.metadata.generation == 2


def test_it_requires_a_field_manager_for_apply(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    with pytest.raises(ApiException) as info:
        core.patch_namespaced_config_map("cfg", namespace, {"apiVersion": "v1", "kind": "ConfigMap",
                                                           "metadata": {"name": "cfg"}}, _content_type=APPLY)
    assert info.value.status == 422
    assert "fieldManager: Required value" in json.loads(info.value.body)["message"]


def test_it_waits_for_a_deployment_created_by_apply_to_roll_out(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    apply(apps.patch_namespaced_deployment, "web", namespace, deployment_manifest("web", replicas=2))
    done = wait_for(lambda: (lambda d: d if (d.status.available_replicas or 0) == 2 else None)(
        apps.read_namespaced_deployment_status("web", namespace)), timeout=90, message="two available replicas")
    assert done.status.observed_generation == done.metadata.generation
