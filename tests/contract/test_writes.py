"""Create, replace, patch and delete, and the shape of the errors they answer with."""
from __future__ import annotations

from kubernetes import client

from tests.contract.support import api_error, deployment_manifest


def test_it_answers_404_with_a_kubernetes_status(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    code, status = api_error(lambda: apps.read_namespaced_deployment("missing", namespace))
    assert code == 404
    assert status["kind"] == "Status" and status["status"] == "Failure" and status["reason"] == "NotFound"
    assert status["message"] == 'deployments.apps "missing" not found'
    assert status["details"] == {"name": "missing", "group": "apps", "kind": "deployments"}
    code, status = api_error(lambda: client.CoreV1Api(kube_api).read_namespaced_secret("missing", namespace))
    assert status["message"] == 'secrets "missing" not found'
    assert status["details"] == {"name": "missing", "kind": "secrets"}


def test_it_refuses_a_duplicate_create(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}})
    code, status = api_error(lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}}))
    assert (code, status["reason"]) == (409, "AlreadyExists")
    assert status["message"] == 'configmaps "cfg" already exists'


def test_it_generates_names(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    made = core.create_namespaced_config_map(namespace, {"metadata": {"generateName": "build-"}})
    assert made.metadata.name.startswith("build-") and len(made.metadata.name) == len("build-") + 5


def test_it_refuses_a_replace_with_a_stale_resource_version(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    first.data = {"a": "2"}
    second = core.replace_namespaced_config_map("cfg", namespace, first)
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    first.data = {"a": "3"}
    code, status = api_error(lambda: core.replace_namespaced_config_map("cfg", namespace, first))
    assert (code, status["reason"]) == (409, "Conflict")
    assert status["message"] == ('Operation cannot be fulfilled on configmaps "cfg": the object has been modified; '
                                 "please apply your changes to the latest version and try again")


def test_it_validates_objects_with_field_causes(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    bad = deployment_manifest("web")
    bad["spec"]["template"]["metadata"]["labels"] = {"app.kubernetes.io/name": "other"}
    code, status = api_error(lambda: apps.create_namespaced_deployment(namespace, bad))
    assert (code, status["reason"]) == (422, "Invalid")
    assert status["details"]["kind"] == "Deployment" and status["details"]["group"] == "apps"
    causes = {c["field"]: c for c in status["details"]["causes"]}
    assert causes["spec.template.metadata.labels"]["reason"] == "FieldValueInvalid"
    assert "`selector` does not match template `labels`" in causes["spec.template.metadata.labels"]["message"]

    code, status = api_error(lambda: apps.create_namespaced_deployment(namespace, deployment_manifest("Not_A_Name")))
    assert code == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["metadata.name"]

    missing_image = deployment_manifest("web")
    del missing_image["spec"]["template"]["spec"]["containers"][0]["image"]
    code, status = api_error(lambda: apps.create_namespaced_deployment(namespace, missing_image))
    assert {"field": "spec.template.spec.containers[0].image", "reason": "FieldValueRequired"}.items() <= \
        status["details"]["causes"][0].items()

    code, status = api_error(lambda: client.CoreV1Api(kube_api).create_namespaced_service(
        namespace, {"metadata": {"name": "web"}, "spec": {"selector": {"a": "b"}}}))
    assert code == 422
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.ports"]

    code, status = api_error(lambda: client.CoreV1Api(kube_api).create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg", "labels": {"tier": "not valid!"}}}))
    assert code == 422
    assert status["details"]["causes"][0]["field"] == "metadata.labels"


def test_it_merge_patches_labels(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg", "labels": {"a": "1", "b": "2"}}})
    patched = core.patch_namespaced_config_map("cfg", namespace, {"metadata": {"labels": {"a": "9", "b": None}}},
                                               _content_type="application/merge-patch+json")
    assert patched.metadata.labels == {"a": "9"}


def test_it_strategic_merge_patches_containers_by_name(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    manifest = deployment_manifest("web")
    manifest["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "busybox:1.36",
                                                               "command": ["sleep", "3600"]})
    apps.create_namespaced_deployment(namespace, manifest)
    patched = apps.patch_namespaced_deployment("web", namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "nginx:1.28", "env": [{"name": "A", "value": "1"}]}]}}}})
    containers = {c.name: c for c in patched.spec.template.spec.containers}
    assert containers["app"].image == "nginx:1.28" and containers["app"].env[0].name == "A"
    assert containers["sidecar"].image == "busybox:1.36"
    assert patched.metadata.generation == 2


def test_it_json_patches(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    patched = core.patch_namespaced_config_map("cfg", namespace, [
        {"op": "replace", "path": "/data/a", "value": "2"}, {"op": "add", "path": "/data/b", "value": "3"}])
    assert patched.data == {"a": "2", "b": "3"}


def test_it_deletes_and_answers_404_afterwards(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s"}, "stringData": {"k": "v"}})
    assert core.read_namespaced_secret("s", namespace).data == {"k": "dg=="}
    answer = core.delete_namespaced_secret("s", namespace)
    assert answer["status"] == "Success" and answer["details"]["name"] == "s"
    code, _ = api_error(lambda: core.delete_namespaced_secret("s", namespace))
    assert code == 404


def test_it_ignores_status_in_ordinary_updates_and_uses_the_status_subresource(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    body = deployment_manifest("web", replicas=0)
    body["status"] = {"replicas": 7}
    created = apps.create_namespaced_deployment(namespace, body)
    assert (created.status.replicas or 0) == 0


def test_it_gives_each_service_its_own_address_and_frees_it_on_delete(kube_api, namespace):
    core = client.CoreV1Api(kube_api)

    def service(name: str, **spec) -> dict:
        return {"metadata": {"name": name}, "spec": {"ports": [{"port": 80}], **spec}}

    made = [core.create_namespaced_service(namespace, service(f"web-{i}", type="NodePort")) for i in range(30)]
    assert len({s.spec.cluster_ip for s in made}) == 30
    assert len({s.spec.ports[0].node_port for s in made}) == 30
    taken_ip, taken_port = made[0].spec.cluster_ip, made[0].spec.ports[0].node_port

    code, status = api_error(lambda: core.create_namespaced_service(namespace, service("copy", cluster_ip=taken_ip)))
    assert code == 422
    assert f"failed to allocate IP {taken_ip}: provided IP is already allocated" in status["message"]
    code, status = api_error(lambda: core.create_namespaced_service(
        namespace, service("port-copy", type="NodePort", ports=[{"port": 80, "nodePort": taken_port}])))
    assert code == 422 and "provided port is already allocated" in status["message"]

    # An update keeps the service's own address and port.
    core.patch_namespaced_service("web-0", namespace, {"metadata": {"labels": {"tier": "web"}}})
    kept = core.read_namespaced_service("web-0", namespace)
    assert (kept.spec.cluster_ip, kept.spec.ports[0].node_port) == (taken_ip, taken_port)

    core.delete_namespaced_service("web-0", namespace)
    again = core.create_namespaced_service(
        namespace, service("web-0-again", type="NodePort", cluster_ip=taken_ip, ports=[{"port": 80, "nodePort": taken_port}]))
    assert (again.spec.cluster_ip, again.spec.ports[0].node_port) == (taken_ip, taken_port)
