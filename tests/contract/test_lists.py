"""Label and field selectors, paging, lists across namespaces."""
from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.contract.support import deployment_manifest, wait_for


def _names(items) -> list[str]:
    return sorted(i.metadata.name for i in items)


def test_it_filters_by_label_selectors(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    for name, labels in [("a", {"tier": "web", "env": "prod"}), ("b", {"tier": "worker", "env": "prod"}),
                         ("c", {"tier": "web"}), ("d", {"other": "x"})]:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})

    def select(selector: str) -> list[str]:
        return [n for n in _names(core.list_namespaced_config_map(namespace, label_selector=selector).items)
                if n in "abcd"]

    assert select("tier=web") == ["a", "c"]
    assert select("tier==web,env=prod") == ["a"]
    assert select("tier!=web") == ["b", "d"]
    assert select("tier in (web, worker)") == ["a", "b", "c"]
    assert select("tier notin (web)") == ["b", "d"]
    assert select("env") == ["a", "b"]
    assert select("!env") == ["c", "d"]


def test_it_rejects_a_malformed_label_selector(kube_api, namespace):
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(kube_api).list_namespaced_config_map(namespace, label_selector="tier in web")
    assert info.value.status == 400


def test_it_filters_by_field_selectors(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    for name in ("one", "two"):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name}})
    assert _names(core.list_namespaced_config_map(namespace, field_selector="metadata.name=two").items) == ["two"]
    assert "one" not in _names(core.list_namespaced_config_map(namespace, field_selector="metadata.name!=one").items)
    apps = client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment_manifest("web", replicas=2))
    wait_for(lambda: len(core.list_namespaced_pod(namespace, field_selector="status.phase=Running").items) == 2,
             timeout=90, message="two running pods")
    assert core.list_namespaced_pod(namespace, field_selector="status.phase=Pending").items == []
    node = core.list_namespaced_pod(namespace).items[0].spec.node_name
    assert len(core.list_namespaced_pod(namespace, field_selector=f"spec.nodeName={node}").items) == 2


def test_it_rejects_an_unknown_field_label(kube_api, namespace):
    with pytest.raises(ApiException) as info:
        client.CoreV1Api(kube_api).list_namespaced_config_map(namespace, field_selector="spec.whatever=1")
    assert info.value.status == 400


def test_it_pages_with_limit_and_continue(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    for i in range(5):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-{i}", "labels": {"paged": "yes"}}})
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(namespace, label_selector="paged=yes", limit=2, _continue=token)
        assert len(page.items) <= 2
        seen += [i.metadata.name for i in page.items]
        pages += 1
        token = page.metadata.var_continue
        if not token:
            break
        # Objects created after the first page do not leak into a paged list.
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"page-late-{pages}",
                                                                   "labels": {"paged": "yes"}}})
    assert seen == [f"page-{i}" for i in range(5)]
    assert pages >= 3


def test_it_lists_across_all_namespaces(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    manifest = deployment_manifest("web", replicas=0)
    manifest["metadata"]["labels"]["ale.test/ns"] = namespace
    apps.create_namespaced_deployment(namespace, manifest)
    found = apps.list_deployment_for_all_namespaces(label_selector=f"ale.test/ns={namespace}")
    assert [(d.metadata.namespace, d.metadata.name) for d in found.items] == [(namespace, "web")]
    assert int(found.metadata.resource_version) > 0
