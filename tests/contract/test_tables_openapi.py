"""What kubectl reads from the API beyond objects: server-side tables, OpenAPI v2/v3 and field validation.

Written against the API, not the emulator: it runs against a real cluster (ALE_TEST_KUBECONFIG) too,
so it checks the shapes kube-apiserver guarantees, never devcluster details.
"""
from __future__ import annotations

import json

from kubernetes import client

from tests.contract.support import deployment_manifest, wait_for

TABLE_V1 = "application/json;as=Table;v=v1;g=meta.k8s.io"
TABLE_V1BETA1 = "application/json;as=Table;v=v1beta1;g=meta.k8s.io"
KUBECTL_ACCEPT = f"{TABLE_V1},{TABLE_V1BETA1},application/json"
PROTOBUF_V2 = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"


def _request(api: client.ApiClient, method: str, path: str, *, accept: str = "application/json",
             body: object | None = None, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """A raw call through the official client's connection pool and credentials."""
    headers = {"Accept": accept, "Content-Type": "application/json"}
    for auth in api.configuration.auth_settings().values():
        if auth["in"] == "header" and auth["value"]:
            headers[auth["key"]] = auth["value"]
    response = api.rest_client.request(method, api.configuration.host + path, headers=headers,
                                       body=body, _request_timeout=timeout)
    data = response.read()
    return response.status, dict(response.getheaders()), data


def _json(api: client.ApiClient, method: str, path: str, **kwargs: object) -> dict:
    status, _, data = _request(api, method, path, **kwargs)  # type: ignore[arg-type]
    assert status < 300, (status, data[:500])
    return json.loads(data)


def _columns(table: dict) -> list[tuple[str, int]]:
    return [(c["name"], c["priority"]) for c in table["columnDefinitions"]]


def _running_deployment(api: client.ApiClient, namespace: str, name: str = "web") -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(namespace, deployment_manifest(name))
    wait_for(lambda: (apps.read_namespaced_deployment_status(name, namespace).status.ready_replicas or 0) == 1,
             timeout=120, message="the deployment to be ready")


# --- tables -------------------------------------------------------------------------------------

def test_it_answers_a_pod_list_as_a_table_with_kube_apiservers_columns(kube_api, namespace):
    _running_deployment(kube_api, namespace)
    table = _json(kube_api, "GET", f"/api/v1/namespaces/{namespace}/pods", accept=KUBECTL_ACCEPT)
    assert (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    assert _columns(table) == [("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0), ("IP", 1),
                               ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)]
    [row] = table["rows"]
    assert row["cells"][1:4] == ["1/1", "Running", "0"] and len(row["cells"]) == 9
    assert row["object"]["kind"] == "PartialObjectMetadata"
    assert row["object"]["metadata"]["name"] == row["cells"][0]
    assert table["metadata"]["resourceVersion"]


def test_it_answers_tables_for_one_object_and_in_v1beta1(kube_api, namespace):
    _running_deployment(kube_api, namespace)
    one = _json(kube_api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/web", accept=TABLE_V1BETA1)
    assert (one["kind"], one["apiVersion"]) == ("Table", "meta.k8s.io/v1beta1")
    assert _columns(one) == [("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0), ("Age", 0),
                             ("Containers", 1), ("Images", 1), ("Selector", 1)]
    assert one["rows"][0]["cells"][:4] == ["web", "1/1", 1, 1]
    assert one["rows"][0]["cells"][5:7] == ["app", "nginx:1.27"]
    status = _json(kube_api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments/web/status",
                   accept=TABLE_V1)
    assert status["kind"] == "Table" and _columns(status) == _columns(one)
    full = _json(kube_api, "GET", f"/apis/apps/v1/namespaces/{namespace}/deployments?includeObject=Object",
                 accept=TABLE_V1)
    assert full["rows"][0]["object"]["kind"] == "Deployment" and full["rows"][0]["object"]["spec"]["replicas"] == 1


def test_it_answers_tables_for_events_services_and_secrets(kube_api, namespace):
    _running_deployment(kube_api, namespace)
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_service(namespace, {"metadata": {"name": "web"}, "spec": {
        "selector": {"app.kubernetes.io/name": "web"}, "ports": [{"port": 80}]}})
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"a": "1", "b": "2"}})
    events = _json(kube_api, "GET", f"/api/v1/namespaces/{namespace}/events", accept=TABLE_V1)
    assert _columns(events) == [("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0), ("Subobject", 1),
                                ("Source", 1), ("Message", 0), ("First Seen", 1), ("Count", 1), ("Name", 1)]
    assert ["Normal", "ScalingReplicaSet", "deployment/web"] in [r["cells"][1:4] for r in events["rows"]]
    services = _json(kube_api, "GET", f"/api/v1/namespaces/{namespace}/services", accept=TABLE_V1)
    assert [c for c, _ in _columns(services)] == ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age",
                                                  "Selector"]
    assert services["rows"][0]["cells"][1] == "ClusterIP" and services["rows"][0]["cells"][4] == "80/TCP"
    secrets = _json(kube_api, "GET", f"/api/v1/namespaces/{namespace}/secrets?fieldSelector=metadata.name=creds",
                    accept=TABLE_V1)
    assert [c for c, _ in _columns(secrets)] == ["Name", "Type", "Data", "Age"]
    assert secrets["rows"][0]["cells"][:3] == ["creds", "Opaque", 2]


def test_it_streams_table_rows_in_a_watch_with_columns_once(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "one"}, "data": {"a": "1"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "two"}})
    headers = {"Accept": KUBECTL_ACCEPT}
    for auth in kube_api.configuration.auth_settings().values():
        if auth["in"] == "header" and auth["value"]:
            headers[auth["key"]] = auth["value"]
    response = kube_api.rest_client.request(
        "GET", f"{kube_api.configuration.host}/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=5",
        headers=headers, _request_timeout=30)
    events = []
    try:
        buffer = b""
        for chunk in response.response.stream(1024):  # the client leaves the body unread: a stream
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                events.append(json.loads(line))
            if len([e for e in events if e["object"]["rows"][0]["cells"][0] in ("one", "two")]) == 2:
                break
    finally:
        response.response.release_conn()
    tables = [e["object"] for e in events if e["type"] == "ADDED"]
    assert all(t["kind"] == "Table" and len(t["rows"]) == 1 for t in tables)
    assert [c for c, _ in _columns(tables[0])] == ["Name", "Data", "Age"]
    # kube-apiserver sends the column definitions with the first event only.
    assert len(tables) >= 2 and all(not t.get("columnDefinitions") for t in tables[1:])
    assert {t["rows"][0]["cells"][0]: t["rows"][0]["cells"][1] for t in tables if t["rows"][0]["cells"][0] in
            ("one", "two")} == {"one": 1, "two": 0}


# --- OpenAPI ------------------------------------------------------------------------------------

def test_it_publishes_openapi_v3_with_the_extensions_kubectl_reads(kube_api):
    index = _json(kube_api, "GET", "/openapi/v3")
    apps = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
    assert apps.startswith("/openapi/v3/apis/apps/v1?hash=") and "api/v1" in index["paths"]
    doc = _json(kube_api, "GET", apps)
    assert doc["openapi"].startswith("3.")
    schemas = doc["components"]["schemas"]
    deployment = schemas["io.k8s.api.apps.v1.Deployment"]
    assert {"group": "apps", "kind": "Deployment", "version": "v1"} in deployment["x-kubernetes-group-version-kind"]
    assert deployment["properties"]["spec"]["$ref"] == "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["x-kubernetes-list-type"] == "map" and containers["x-kubernetes-list-map-keys"] == ["name"]
    replicas = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["replicas"]
    assert replicas["type"] == "integer" and replicas["description"].startswith("Number of desired pods.")
    patch = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {"group": "apps", "kind": "Deployment", "version": "v1"}
    assert "fieldValidation" in [p["name"] for p in patch["parameters"] if p["in"] == "query"]
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]


def test_it_publishes_openapi_v2_as_json_and_protobuf(kube_api):
    doc = _json(kube_api, "GET", "/openapi/v2")
    assert doc["swagger"] == "2.0"
    pod = doc["definitions"]["io.k8s.api.core.v1.Pod"]
    assert {"group": "", "kind": "Pod", "version": "v1"} in pod["x-kubernetes-group-version-kind"]
    assert pod["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.core.v1.PodSpec"
    status, headers, body = _request(kube_api, "GET", "/openapi/v2", accept=PROTOBUF_V2)
    content_type = {k.lower(): v for k, v in headers.items()}["content-type"]
    assert status == 200 and content_type.startswith("application/com.github.proto-openapi.spec.v2")
    # gnostic's Document: field 1 (swagger) is the string "2.0".
    assert body[:5] == b"\x0a\x032.0"


# --- field validation ---------------------------------------------------------------------------

def test_it_refuses_unknown_fields_when_strict_and_drops_them_with_a_warning_otherwise(kube_api, namespace):
    manifest = deployment_manifest("web")
    manifest["spec"]["bogus"] = 1
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    status, _, data = _request(kube_api, "POST", path + "?fieldValidation=Strict", body=manifest)
    refused = json.loads(data)
    assert (status, refused["reason"]) == (400, "BadRequest")
    assert refused["message"] == ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
                                  'error: unknown field "spec.bogus"')
    status, headers, data = _request(kube_api, "POST", path + "?fieldValidation=Warn", body=manifest)
    assert status == 201
    assert {k.lower(): v for k, v in headers.items()}["warning"] == '299 - "unknown field \\"spec.bogus\\""'
    assert "bogus" not in json.loads(data)["spec"]
