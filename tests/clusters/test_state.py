"""clusters.state.ClusterState on its own: what it keeps of each object, and what a relist hands over."""

from __future__ import annotations

import json

import pytest

from clusters.models import Cluster
from clusters.state import DEPLOYMENTS, EVENTS, JOBS, NAMESPACES, PODS, Changes, ClusterState, WriteResult
from clusters.watcher import MAX_EVENTS_PER_FLUSH, ClusterWatcher

NAMESPACE = "ale-abc123"
WARNING_WINDOW = 20  # MAX_WARNINGS_PER_SERVICE: what a service may keep of its recent Warnings


def labels(service: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "ale", "ale.dev/environment": "abc123", "ale.dev/service": service,
            "pod-template-hash": "7d9f8b6c5"}


def managed_fields() -> list[dict]:
    # What a real API server attaches to every object: often the larger half of a pod.
    return [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
             "fieldsType": "FieldsV1", "fieldsV1": {f"f:status{i}": {f"f:conditions{j}": {} for j in range(20)}
                                                   for i in range(10)}}]


def full_pod(service: str, name: str, *, ready: bool = True, resource_version: str = "1") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": NAMESPACE, "uid": f"uid-{name}", "resourceVersion": resource_version,
                     "labels": labels(service), "managedFields": managed_fields(),
                     "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
                     "ownerReferences": [{"kind": "ReplicaSet", "name": f"{service}-7d9f8b6c5", "uid": "rs"}]},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27", "env": [{"name": f"V{i}", "value": "x" * 50}
                                                                               for i in range(30)],
                                 "resources": {"requests": {"cpu": "250m"}}, "livenessProbe": {"httpGet": {"path": "/"}}}],
                 "volumes": [{"name": f"v{i}", "configMap": {"name": f"c{i}"}} for i in range(10)],
                 "tolerations": [{"key": "k", "operator": "Exists"}], "nodeName": "devcluster"},
        "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "10.0.0.2",
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                                   "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                   "containerStatuses": [{"name": "app", "image": "nginx:1.27", "imageID": "sha256:abc",
                                          "containerID": "containerd://abc", "ready": ready, "restartCount": 0,
                                          "started": True, "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]},
    }


def full_deployment(service: str, *, ready: int = 3, resource_version: str = "1") -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": service, "namespace": NAMESPACE, "uid": f"uid-{service}", "generation": 1,
                     "resourceVersion": resource_version, "labels": labels(service), "managedFields": managed_fields(),
                     "annotations": {"ale.dev/generation": "1", "deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 3, "template": full_pod(service, "template")},
        "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "readyReplicas": ready,
                   "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                                   "lastUpdateTime": "2026-01-01T00:00:00Z"}]},
    }


def full_event(uid: str, pod_name: str, *, count: int = 1, resource_version: str = "1", type_: str = "Normal") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{pod_name}.{uid}", "namespace": NAMESPACE, "uid": uid,
                     "resourceVersion": resource_version, "managedFields": managed_fields()},
        "involvedObject": {"kind": "Pod", "name": pod_name, "namespace": NAMESPACE, "uid": "p"},
        "reason": "Started", "message": "Started container app", "type": type_, "count": count,
        "source": {"component": "kubelet", "host": "devcluster"},
        "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:00:00Z",
    }


def synced() -> ClusterState:
    state = ClusterState()
    for kind in (NAMESPACES, DEPLOYMENTS, PODS, EVENTS, JOBS):
        state.replace(kind, [])
    state.take_changes()
    return state


def test_it_keeps_only_what_the_status_and_the_events_read():
    state = synced()
    pod = full_pod("svc1", "svc1-7d9f8b6c5-a")
    state.apply(PODS, "ADDED", pod)
    state.apply(DEPLOYMENTS, "ADDED", full_deployment("svc1"))

    deployment, pods, _ = state.observed("svc1")

    assert "managedFields" not in pods[0]["metadata"] and "volumes" not in pods[0]["spec"]
    assert "template" not in deployment["spec"] and "managedFields" not in deployment["metadata"]
    # What the card's status reads is all there.
    assert pods[0]["spec"]["containers"] == [{"name": "app", "image": "nginx:1.27"}]
    assert pods[0]["status"]["containerStatuses"][0]["state"] == {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    assert deployment["metadata"]["annotations"] == {"ale.dev/generation": "1"}
    assert deployment["status"]["readyReplicas"] == 3
    # A small fraction of what the cluster sent.
    assert len(json.dumps(pods[0])) * 5 < len(json.dumps(pod))


def test_a_relist_that_finds_the_cluster_as_it_was_hands_over_nothing():
    state = ClusterState()
    pods = [full_pod(f"svc{i}", f"svc{i}-7d9f8b6c5-{r}") for i in range(20) for r in "abc"]
    deployments = [full_deployment(f"svc{i}") for i in range(20)]
    events = [full_event(f"e{i}", pod["metadata"]["name"]) for i, pod in enumerate(pods)]
    for kind, objects in ((NAMESPACES, []), (DEPLOYMENTS, deployments), (PODS, pods), (EVENTS, events), (JOBS, [])):
        state.replace(kind, objects)
    first = state.take_changes()
    assert first.all_services and len(first.events) == 60

    # After 410 Gone: the same objects, only their resourceVersions moved (a status heartbeat).
    for pod in pods:
        pod["metadata"]["resourceVersion"] = "2"
    state.replace(DEPLOYMENTS, deployments)
    state.replace(PODS, pods)
    state.replace(EVENTS, events)

    assert not state.take_changes()


def test_a_relist_hands_over_what_did_change():
    state = synced()
    state.replace(PODS, [full_pod("svc1", "svc1-a"), full_pod("svc2", "svc2-a")])
    state.replace(EVENTS, [full_event("e1", "svc1-a"), full_event("e2", "svc2-a")])
    state.take_changes()

    state.replace(PODS, [full_pod("svc1", "svc1-a", ready=False)])  # svc1's pod changed, svc2's is gone
    state.replace(EVENTS, [full_event("e1", "svc1-a", count=2, resource_version="5"), full_event("e2", "svc2-a")])

    changes = state.take_changes()
    assert changes.services == {"svc1", "svc2"} and not changes.all_services
    assert set(changes.events) == {"e1"}


def test_it_holds_no_more_than_the_current_objects_after_stop_start_cycles():
    state = synced()
    services = [f"svc{i}" for i in range(30)]
    for cycle in range(5):
        # Start: three pods per service, and the events about them.
        pods = [full_pod(service, f"{service}-{cycle}-{r}", resource_version=str(cycle)) for service in services
                for r in "abc"]
        for pod in pods:
            state.apply(PODS, "ADDED", pod)
            name = pod["metadata"]["name"]
            for reason in ("Scheduled", "Pulled", "Started"):
                state.apply(EVENTS, "ADDED", full_event(f"{name}-{reason}", name))
                state.note_warning(pod["metadata"]["labels"]["ale.dev/service"], f"{name}-{reason}",
                                   full_event(f"{name}-{reason}", name, type_="Warning"), mark=False)
        for service in services:
            state.apply(DEPLOYMENTS, "MODIFIED", full_deployment(service, resource_version=str(cycle)))
        state.take_changes()
        # Stop: the pods go; the cluster expires the previous cycle's events (its event TTL).
        for pod in pods:
            state.apply(PODS, "DELETED", pod)
            name = pod["metadata"]["name"]
            if cycle:
                previous = name.replace(f"-{cycle}-", f"-{cycle - 1}-")
                for reason in ("Scheduled", "Pulled", "Started"):
                    state.apply(EVENTS, "DELETED", full_event(f"{previous}-{reason}", previous))
        state.take_changes()

    sizes = state.sizes()
    assert (sizes["pods"], sizes["pod_names"], sizes["deployments"]) == (0, 0, 30)
    # The events of the last cycle the cluster still holds, nothing older.
    assert sizes["events"] == 30 * 3 * 3
    assert sizes["warnings"] <= 30 * WARNING_WINDOW
    assert sizes["pending_events"] == 0


def recording_watcher(name: str) -> tuple[ClusterWatcher, list[Changes]]:
    """A watcher whose writer only keeps what each flush hands it."""
    handed: list[Changes] = []

    def writer(cluster_id: int, state: ClusterState, changes: Changes) -> WriteResult:
        handed.append(changes)
        return WriteResult()

    return ClusterWatcher(Cluster(name=name), writer=writer), handed


@pytest.mark.django_db  # the flush refreshes the writer thread's database connection
def test_the_writer_gets_a_big_first_list_of_events_in_slices_the_statuses_first():
    watcher, handed = recording_watcher("big")
    events = [full_event(f"e{i}", f"svc{i % 50}-a") for i in range(MAX_EVENTS_PER_FLUSH * 2 + 10)]
    for kind, objects in ((NAMESPACES, []), (DEPLOYMENTS, []), (PODS, []), (EVENTS, events), (JOBS, [])):
        watcher.state.replace(kind, objects)

    while watcher.flush():
        pass

    # The statuses go alone, ahead of the backlog; then the events, a slice at a time.
    assert [len(changes.events) for changes in handed] == [0, MAX_EVENTS_PER_FLUSH, MAX_EVENTS_PER_FLUSH, 10]
    assert handed[0].all_services and not any(changes.all_services for changes in handed[1:])
    assert set().union(*(changes.events for changes in handed)) == {f"e{i}" for i in range(len(events))}


@pytest.mark.django_db  # the flush refreshes the writer thread's database connection
def test_statuses_that_keep_changing_in_a_storm_do_not_hold_back_a_backlog_of_events():
    watcher, handed = recording_watcher("storm")
    for kind in (NAMESPACES, DEPLOYMENTS, PODS, EVENTS, JOBS):
        watcher.state.replace(kind, [])
    watcher.flush()
    handed.clear()
    backlog = MAX_EVENTS_PER_FLUSH * 3
    for i in range(backlog):
        watcher.state.apply(EVENTS, "ADDED", full_event(f"e{i}", f"svc{i % 50}-a"))

    # A pod of some service changes before every flush, as in a storm of starting pods.
    for flush in range(8):
        watcher.state.apply(PODS, "ADDED", full_pod(f"svc{flush}", f"svc{flush}-a"))
        watcher.flush()

    stored = [event for changes in handed for event in changes.events]
    assert sorted(stored) == sorted(f"e{i}" for i in range(backlog))
    # Statuses still go ahead of the backlog, every other flush, and no status waits more than
    # one slice; the last slice (no longer a backlog) goes with the statuses.
    assert [bool(changes.services) for changes in handed[:5]] == [True] * 5
    assert [len(changes.events) for changes in handed[:5]] == [0, MAX_EVENTS_PER_FLUSH] * 2 + [MAX_EVENTS_PER_FLUSH]


def test_a_list_of_events_cut_short_hands_over_what_it_read_and_the_next_list_the_rest():
    state = synced()
    events = [full_event(f"e{i}", "svc0-a") for i in range(10)]

    def cut_short():
        yield from events[:4]
        raise ConnectionError("the cluster went away between two pages")

    with pytest.raises(ConnectionError):
        state.replace(EVENTS, cut_short())
    assert set(state.take_changes().events) == {"e0", "e1", "e2", "e3"}

    state.replace(EVENTS, iter(events))

    assert set(state.take_changes().events) == {f"e{i}" for i in range(4, 10)}
    assert state.sizes()["events"] == 10
