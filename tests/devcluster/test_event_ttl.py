"""Events expire like kube-apiserver's (--event-ttl): gone from lists, DELETED on watches."""
from __future__ import annotations

import json
import time

import pytest
from kubernetes import client, config, watch

from devcluster import DevCluster, kinds
from devcluster.__main__ import parse_args
from tests.waiting import wait_for


@pytest.fixture
def short_ttl_api(tmp_path):
    dc = DevCluster(pod_ready_seconds=0.2, event_ttl="3s").start()
    api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield client.CoreV1Api(api)
    finally:
        api.close()
        dc.stop()


def test_it_expires_events_after_the_ttl_and_watches_see_them_deleted(short_ttl_api):
    core = short_ttl_api
    core.create_namespace({"metadata": {"name": "ttl"}})
    core.create_namespaced_pod("ttl", {"metadata": {"name": "web"}, "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}})
    wait_for(lambda: core.read_namespaced_pod("web", "ttl").status.phase == "Running", what="the pod running")
    # The kubelet's last event (Started) is written once the pod runs.
    events = wait_for(lambda: (found := core.list_namespaced_event("ttl")).items and
                      any(e.reason == "Started" for e in found.items) and found, what="the pod's Started event")
    names = {e.metadata.name for e in events.items}
    assert {"Scheduled", "Pulled", "Created", "Started"} <= {e.reason for e in events.items}

    deleted: set[str] = set()
    ages: list[float] = []
    # The server ends the watch after timeout_seconds: a devcluster that never expires fails here.
    for change in watch.Watch().stream(core.list_namespaced_event, "ttl", resource_version=events.metadata.resource_version,
                                       timeout_seconds=20):
        if change["type"] == "DELETED":
            event = change["object"]
            deleted.add(event.metadata.name)
            ages.append(time.time() - (event.last_timestamp or event.event_time).timestamp())
        if names <= deleted:
            break
    assert names <= deleted, f"no DELETED event for {sorted(names - deleted)} within 20 s"
    # Not before their time (timestamps are whole seconds, hence 2 s rather than 3).
    assert min(ages) >= 2.0, ages
    assert core.list_namespaced_event("ttl").items == []
    assert core.read_namespaced_pod("web", "ttl").status.phase == "Running"


def test_it_keeps_events_an_hour_unless_told():
    assert parse_args(["--kubeconfig", "k"]).event_ttl == 3600
    assert parse_args(["--kubeconfig", "k", "--event-ttl", "90"]).event_ttl == 90
    assert parse_args(["--kubeconfig", "k", "--event-ttl", "1h30m"]).event_ttl == 5400
    assert parse_args(["--kubeconfig", "k", "--event-ttl", "500ms"]).event_ttl == 0.5


@pytest.mark.parametrize("value", ["soon", "1d", "0", "-5s", "1h-"])
def test_it_refuses_an_event_ttl_that_is_not_a_positive_duration(value, capsys):
    with pytest.raises(SystemExit):
        parse_args(["--kubeconfig", "k", f"--event-ttl={value}"])
    assert f"argument --event-ttl: event TTL {value!r}" in capsys.readouterr().err
    with pytest.raises(ValueError, match="event TTL"):
        DevCluster(event_ttl=value)


@pytest.fixture
def short_ttl_cluster(tmp_path):
    dc = DevCluster(pod_ready_seconds=0.2, event_ttl="3s").start()
    api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kubeconfig")))
    try:
        yield dc, client.CoreV1Api(api)
    finally:
        api.close()
        dc.stop()


def test_a_stored_event_whose_time_is_not_a_time_expires_and_the_cluster_goes_on(short_ttl_cluster):
    """The API refuses such an event (tests/contract/test_events.py), but a state file saved
    before may hold one: its expiry goes by when it was stored. It once ended the controllers'
    resync for good."""
    dc, core = short_ttl_cluster
    core.create_namespace({"metadata": {"name": "odd"}})
    stored = {"kind": "Event", "apiVersion": "v1", "metadata": {
        "name": "odd", "namespace": "odd", "uid": "odd-uid", "resourceVersion": "1",
        "creationTimestamp": kinds.now_iso()}, "involvedObject": {"kind": "Pod", "name": "x", "namespace": "odd"},
        "reason": "Odd", "message": "a time that is not one", "lastTimestamp": "yesterday"}
    dc._loop.call_soon_threadsafe(dc.server.store.put, "events", stored)

    def names() -> list[str]:
        listed = json.loads(core.list_namespaced_event("odd", _preload_content=False).data)
        return [e["metadata"]["name"] for e in listed["items"]]

    wait_for(lambda: names() == ["odd"], timeout=5, what="the odd event stored")
    wait_for(lambda: not names(), timeout=20, what="the odd event expired")
