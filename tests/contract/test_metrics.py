"""metrics.k8s.io/v1beta1 as metrics-server serves it: what `kubectl top pods` and `kubectl top nodes` read.

Against a real cluster metrics-server must be installed; its first scrape of a new pod can take a
minute, hence the long waits.
"""
from __future__ import annotations

import re

from kubernetes import client

from tests.contract.support import api_error, wait_for

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
CPU = re.compile(r"^\d+(n|u|m)?$")
MEMORY = re.compile(r"^\d+(Ki|Mi|Gi)?$")


def _web_pod(core: client.CoreV1Api, namespace: str, name: str = "web") -> None:
    core.create_namespaced_pod(namespace, {"metadata": {"name": name, "labels": {"app": name}}, "spec": {
        "containers": [{"name": "app", "image": "nginx:1.27",
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})


def test_it_serves_metrics_in_discovery(kube_api):
    groups = {g.name: g for g in client.ApisApi(kube_api).get_api_versions().groups}
    assert GROUP in groups and groups[GROUP].preferred_version.group_version == f"{GROUP}/{VERSION}"
    resources = client.CustomObjectsApi(kube_api).get_api_resources(GROUP, VERSION).resources
    by_name = {r.name: r for r in resources}
    assert by_name["pods"].kind == "PodMetrics" and by_name["pods"].namespaced
    assert by_name["nodes"].kind == "NodeMetrics" and not by_name["nodes"].namespaced
    assert {"get", "list"} <= set(by_name["pods"].verbs)


def test_it_reports_each_nodes_usage(kube_api):
    metrics = client.CustomObjectsApi(kube_api)
    nodes = {n.metadata.name for n in client.CoreV1Api(kube_api).list_node().items}
    listed = metrics.list_cluster_custom_object(GROUP, VERSION, "nodes")
    assert listed["kind"] == "NodeMetricsList"
    assert {item["metadata"]["name"] for item in listed["items"]} == nodes
    one = metrics.get_cluster_custom_object(GROUP, VERSION, "nodes", sorted(nodes)[0])
    assert one["kind"] == "NodeMetrics" and one["timestamp"] and one["window"]
    assert CPU.match(one["usage"]["cpu"]) and MEMORY.match(one["usage"]["memory"])
    code, status = api_error(lambda: metrics.get_cluster_custom_object(GROUP, VERSION, "nodes", "no-such-node"))
    assert code == 404 and status["message"] == 'nodemetrics.metrics.k8s.io "no-such-node" not found'


def test_it_reports_a_running_pods_containers_namespaced_and_across_namespaces(kube_api, namespace):
    core, metrics = client.CoreV1Api(kube_api), client.CustomObjectsApi(kube_api)
    _web_pod(core, namespace)

    def listed():
        return metrics.list_namespaced_custom_object(GROUP, VERSION, namespace, "pods")["items"]

    (item,) = wait_for(listed, timeout=180, interval=1, message="metrics of the pod")
    assert item["metadata"]["name"] == "web" and item["metadata"]["namespace"] == namespace
    assert [c["name"] for c in item["containers"]] == ["app"]
    usage = item["containers"][0]["usage"]
    assert CPU.match(usage["cpu"]) and MEMORY.match(usage["memory"])

    one = metrics.get_namespaced_custom_object(GROUP, VERSION, namespace, "pods", "web")
    assert one["kind"] == "PodMetrics" and one["containers"][0]["name"] == "app"
    everywhere = metrics.list_cluster_custom_object(GROUP, VERSION, "pods")["items"]
    assert any(m["metadata"]["namespace"] == namespace and m["metadata"]["name"] == "web" for m in everywhere)
    selected = metrics.list_namespaced_custom_object(GROUP, VERSION, namespace, "pods", label_selector="app=other")
    assert selected["items"] == []

    code, status = api_error(lambda: metrics.get_namespaced_custom_object(GROUP, VERSION, namespace, "pods", "nope"))
    assert code == 404 and status["message"] == f'podmetrics.metrics.k8s.io "{namespace}/nope" not found'
