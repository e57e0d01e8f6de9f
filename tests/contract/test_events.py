"""Events through core/v1 and events.k8s.io/v1, as ale's watcher and status pages read them."""
from __future__ import annotations

import datetime
import json
import secrets

import pytest
from kubernetes import client

from tests.contract.support import deployment_manifest, wait_for


def test_it_records_the_events_of_a_deployment_rollout(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.create_namespaced_deployment(namespace, deployment_manifest("web", replicas=1))

    def reasons_for(kind: str) -> set[str]:
        return {e.reason for e in core.list_namespaced_event(namespace,
                                                             field_selector=f"involvedObject.kind={kind}").items}

    wait_for(lambda: {"Scheduled", "Pulling", "Created", "Started"} <= reasons_for("Pod"), timeout=120,
             message="pod events")
    assert "ScalingReplicaSet" in reasons_for("Deployment")
    assert "SuccessfulCreate" in reasons_for("ReplicaSet")
    pod = core.list_namespaced_pod(namespace).items[0]
    events = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items
    scheduled = next(e for e in events if e.reason == "Scheduled")
    assert scheduled.message == f"Successfully assigned {namespace}/{pod.metadata.name} to {pod.spec.node_name}"
    started = next(e for e in events if e.reason == "Started")
    assert started.type == "Normal" and started.source.component == "kubelet"
    assert started.involved_object.uid == pod.metadata.uid and started.involved_object.field_path
    assert started.count >= 1 and started.first_timestamp and started.last_timestamp
    assert started.metadata.name.startswith(pod.metadata.name + ".")
    created = next(e for e in core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=ReplicaSet,reason=SuccessfulCreate").items)
    assert created.message == f"Created pod: {pod.metadata.name}"
    assert created.source.component == "replicaset-controller"


def test_it_serves_events_through_both_apis(kube_api, namespace):
    core, events = client.CoreV1Api(kube_api), client.EventsV1Api(kube_api)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}})
    now = datetime.datetime.now(datetime.timezone.utc)
    name = f"cfg.{secrets.token_hex(8)}"
    events.create_namespaced_event(namespace, {
        "metadata": {"name": name}, "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), "type": "Warning",
        "reason": "Drifted", "note": "config drifted", "action": "Reconcile",
        "reportingController": "ale.dev/reconciler", "reportingInstance": "ale-worker-1",
        "regarding": {"kind": "ConfigMap", "namespace": namespace, "name": "cfg", "uid": cm.metadata.uid,
                      "apiVersion": "v1"}})
    as_core = core.read_namespaced_event(name, namespace)
    assert (as_core.reason, as_core.message, as_core.type) == ("Drifted", "config drifted", "Warning")
    assert as_core.involved_object.name == "cfg" and as_core.reporting_component == "ale.dev/reconciler"
    as_v1 = events.read_namespaced_event(name, namespace)
    assert (as_v1.note, as_v1.regarding.uid, as_v1.reporting_controller) == (
        "config drifted", cm.metadata.uid, "ale.dev/reconciler")
    listed = events.list_namespaced_event(namespace, field_selector="reason=Drifted")
    assert [e.metadata.name for e in listed.items] == [name]
    listed = core.list_namespaced_event(namespace, field_selector="involvedObject.name=cfg,type=Warning")
    assert [e.metadata.name for e in listed.items] == [name]


@pytest.mark.parametrize("stamp, detail", [
    ("yesterday", 'parsing time "yesterday" as "2006-01-02T15:04:05Z07:00": cannot parse "yesterday" as "2006"'),
    ("2026-12-06 14:00:00Z",
     'parsing time "2026-12-06 14:00:00Z" as "2006-01-02T15:04:05Z07:00": cannot parse " 14:00:00Z" as "T"'),
    ("2026-13-06T14:00:00Z", 'parsing time "2026-13-06T14:00:00Z": month out of range'),
])
def test_it_refuses_an_event_whose_time_is_not_a_time(kube_api, namespace, stamp, detail):
    # Past the client's own types, which would refuse it first: as a script sending JSON would.
    conf = kube_api.configuration
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if conf.api_key.get("BearerToken"):
        headers["Authorization"] = conf.api_key["BearerToken"]
    answer = kube_api.rest_client.pool_manager.request(
        "POST", f"{conf.host}/api/v1/namespaces/{namespace}/events", headers=headers, body=json.dumps({
            "metadata": {"name": "odd"}, "involvedObject": {"kind": "Pod", "name": "x", "namespace": namespace},
            "reason": "Odd", "message": "a time that is not one", "lastTimestamp": stamp}).encode())
    status = json.loads(answer.data)
    assert (answer.status, status["reason"]) == (400, "BadRequest")
    assert status["message"] == f'Event in version "v1" cannot be handled as a Event: {detail}'
    assert client.CoreV1Api(kube_api).list_namespaced_event(namespace).items == []
