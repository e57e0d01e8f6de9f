"""Watch streams as ale's watcher consumes them: from a list's resourceVersion, with bookmarks, relisting on 410."""
from __future__ import annotations

import threading

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException


def _collect(stream, until) -> list[dict]:
    events = []
    for event in stream:
        events.append(event)
        if until(events):
            break
    return events


def test_it_streams_changes_after_a_list(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    listed = core.list_namespaced_config_map(namespace, label_selector="watched=yes")
    w = watch.Watch()
    stream = w.stream(core.list_namespaced_config_map, namespace, label_selector="watched=yes",
                      resource_version=listed.metadata.resource_version, timeout_seconds=20)

    def write() -> None:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg", "labels": {"watched": "yes"}},
                                                      "data": {"a": "1"}})
        core.patch_namespaced_config_map("cfg", namespace, {"data": {"a": "2"}})
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "ignored"}})
        core.delete_namespaced_config_map("cfg", namespace)

    writer = threading.Timer(0.2, write)
    writer.start()
    events = _collect(stream, lambda evs: evs[-1]["type"] == "DELETED")
    w.stop()
    writer.join()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [
        ("ADDED", "cfg"), ("MODIFIED", "cfg"), ("DELETED", "cfg")]
    assert events[1]["object"].data == {"a": "2"}
    rvs = [int(e["object"].metadata.resource_version) for e in events]
    assert rvs == sorted(rvs)


def test_it_starts_with_the_current_state_without_a_resource_version(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "existing", "labels": {"w": "1"}}})
    w = watch.Watch()
    events = _collect(w.stream(core.list_namespaced_config_map, namespace, label_selector="w=1", timeout_seconds=10),
                      lambda evs: True)
    w.stop()
    assert [(e["type"], e["object"].metadata.name) for e in events] == [("ADDED", "existing")]


def test_it_sends_bookmarks_when_asked(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    listed = core.list_namespaced_config_map(namespace)
    w = watch.Watch()
    events = list(w.stream(core.list_namespaced_config_map, namespace, allow_watch_bookmarks=True,
                           resource_version=listed.metadata.resource_version, timeout_seconds=4))
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks
    assert int(bookmarks[-1]["raw_object"]["metadata"]["resourceVersion"]) >= int(listed.metadata.resource_version)
    assert w.resource_version == bookmarks[-1]["raw_object"]["metadata"]["resourceVersion"]


def test_it_expires_a_too_old_resource_version_and_a_relist_recovers(kube_api, namespace):
    core = client.CoreV1Api(kube_api)
    w = watch.Watch()
    with pytest.raises(ApiException) as info:
        for _ in w.stream(core.list_namespaced_config_map, namespace, resource_version="1", timeout_seconds=5):
            pass
    assert info.value.status == 410
    assert "too old resource version" in info.value.reason
    listed = core.list_namespaced_config_map(namespace)
    w = watch.Watch()
    stream = w.stream(core.list_namespaced_config_map, namespace,
                      resource_version=listed.metadata.resource_version, timeout_seconds=20)
    threading.Timer(0.2, lambda: core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})).start()
    first = next(e for e in stream if e["object"].metadata.name == "after")
    w.stop()
    assert first["type"] == "ADDED"


def test_it_watches_deployments_across_namespaces_by_label(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    listed = apps.list_deployment_for_all_namespaces(label_selector=f"ale.test/watch={namespace}")
    w = watch.Watch()
    stream = w.stream(apps.list_deployment_for_all_namespaces, label_selector=f"ale.test/watch={namespace}",
                      resource_version=listed.metadata.resource_version, timeout_seconds=20)
    body = {"metadata": {"name": "web", "labels": {"ale.test/watch": namespace, "app": "web"}},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}}}}
    threading.Timer(0.2, lambda: apps.create_namespaced_deployment(namespace, body)).start()
    event = next(stream)
    w.stop()
    assert event["type"] == "ADDED"
    assert (event["object"].metadata.namespace, event["object"].metadata.name) == (namespace, "web")
