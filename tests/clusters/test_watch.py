"""clusters.watch.ResourceWatcher against the devcluster: sync, events, relist, reconnect, stop."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest

from clusters.client import KubeClient
from clusters.watch import ResourceWatcher, backoff_delay, start_watchers
from devcluster import kubeconfig_text
from tests.clusters.helpers import compact, make_configmap, wait_for


class Recorder:
    """Callbacks that keep what the watcher delivered, and a view of current objects."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.syncs: list[list[str]] = []
        self.events: list[tuple[str, str]] = []
        self.objects: dict[str, dict] = {}

    def on_sync(self, objects: list[dict]) -> None:
        with self.lock:
            self.syncs.append(sorted(o["metadata"]["name"] for o in objects))
            self.objects = {o["metadata"]["name"]: o for o in objects}

    def on_event(self, event_type: str, obj: dict) -> None:
        name = obj["metadata"]["name"]
        with self.lock:
            self.events.append((event_type, name))
            if event_type == "DELETED":
                self.objects.pop(name, None)
            else:
                self.objects[name] = obj

    def data(self, name: str) -> dict | None:
        with self.lock:
            obj = self.objects.get(name)
            return obj and obj.get("data")


@pytest.fixture
def watched():
    """Start watchers for a test; they are stopped (and must stop) when it ends."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(*watchers: ResourceWatcher) -> threading.Event:
        threads.extend(start_watchers(watchers, stop))
        return stop

    yield start
    stop.set()
    for thread in threads:
        thread.join(3)
        assert not thread.is_alive()


def make_watcher(kube: KubeClient, namespace: str, recorder: Recorder, **options) -> ResourceWatcher:
    return ResourceWatcher(
        kube,
        "v1",
        "ConfigMap",
        namespace=namespace,
        label_selector="app.kubernetes.io/managed-by=ale",
        on_sync=recorder.on_sync,
        on_event=recorder.on_event,
        **options,
    )


def client(path) -> KubeClient:
    return KubeClient.from_kubeconfig(Path(path).read_text(), name="local")


def test_it_syncs_then_streams_changes(kubeconfig_path, namespace, watched):
    kube = client(kubeconfig_path)
    kube.apply([make_configmap(namespace, "before")])
    kube.apply([make_configmap(namespace, "unmanaged", managed=False)])
    recorder = Recorder()
    watcher = make_watcher(kube, namespace, recorder)

    watched(watcher)
    wait_for(lambda: recorder.syncs, what="the first sync")
    kube.apply([make_configmap(namespace, "after", {"v": "1"})])
    kube.apply([make_configmap(namespace, "after", {"v": "2"})])
    kube.delete("v1", "ConfigMap", "before", namespace)

    wait_for(lambda: ("DELETED", "before") in recorder.events, what="the deletion")
    assert recorder.syncs == [["before"]]
    assert recorder.events == [("ADDED", "after"), ("MODIFIED", "after"), ("DELETED", "before")]
    assert recorder.data("after") == {"v": "2"}
    assert sorted(recorder.objects) == ["after"]


def test_it_keeps_the_resource_version_moving_with_bookmarks(kubeconfig_path, namespace, watched):
    kube = client(kubeconfig_path)
    recorder = Recorder()
    watcher = make_watcher(kube, namespace, recorder, timeout_seconds=4)
    watched(watcher)
    wait_for(lambda: recorder.syncs, what="the first sync")
    listed = int(watcher.resource_version)

    # Writes elsewhere move the cluster's resourceVersion; only bookmarks tell this watcher.
    kube.apply([make_configmap(namespace, "other", managed=False)])

    wait_for(lambda: int(watcher.resource_version) > listed, timeout=10, what="a bookmark")
    assert recorder.events == []
    assert watcher.syncs == 1


def test_it_relists_after_410(devcluster, watched):
    kube = KubeClient.from_kubeconfig(kubeconfig_text(devcluster.url, devcluster.token), name="local")
    namespace = f"relist-{time.monotonic_ns() % 10**9}"
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
    kube.apply([make_configmap(namespace, "first")])
    recorder = Recorder()
    watcher = make_watcher(kube, namespace, recorder, backoff_base=0.05, backoff_cap=0.2)
    watched(watcher)
    wait_for(lambda: recorder.syncs and watcher.watches, what="a watch to be open")

    # Cut the watch and keep it from reconnecting while the server's history moves on.
    rule = devcluster.faults.error(503, path=f"/namespaces/{namespace}/configmaps", method="GET")
    devcluster.faults.drop_watches()
    wait_for(lambda: watcher.failures >= 1, what="a failed reconnect")
    kube.apply([make_configmap(namespace, "second")])
    compact(devcluster)
    devcluster.faults.remove(rule)

    wait_for(lambda: len(recorder.syncs) >= 2, timeout=10, what="a relist")
    assert recorder.syncs == [["first"], ["first", "second"]]
    assert recorder.events == []
    kube.apply([make_configmap(namespace, "third")])
    wait_for(lambda: ("ADDED", "third") in recorder.events, what="events after the relist")
    kube.delete_namespace(namespace)


def test_it_survives_dropped_watches(devcluster, watched):
    kube = KubeClient.from_kubeconfig(kubeconfig_text(devcluster.url, devcluster.token), name="local")
    namespace = f"drops-{time.monotonic_ns() % 10**9}"
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
    recorder = Recorder()
    watcher = make_watcher(kube, namespace, recorder, timeout_seconds=30, backoff_base=0.05, backoff_cap=0.2)
    watched(watcher)
    wait_for(lambda: recorder.syncs, what="the first sync")

    for i, abrupt in enumerate([False, True, False, True]):
        wait_for(lambda: watcher.watches > i, what="a watch to be open")
        time.sleep(0.1)
        assert devcluster.faults.drop_watches(abrupt=abrupt) >= 1
        kube.apply([make_configmap(namespace, f"after-drop-{i}")])
        wait_for(lambda: ("ADDED", f"after-drop-{i}") in recorder.events, what=f"the event after drop {i}")

    assert watcher.syncs == 1  # reconnected from its resourceVersion, no relist
    assert [e for e in recorder.events if e[0] == "ADDED"] == [("ADDED", f"after-drop-{i}") for i in range(4)]
    kube.delete_namespace(namespace)


def test_it_backs_off_while_the_cluster_fails_and_recovers(devcluster, watched):
    kube = KubeClient.from_kubeconfig(kubeconfig_text(devcluster.url, devcluster.token), name="local")
    namespace = f"outage-{time.monotonic_ns() % 10**9}"
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
    rule = devcluster.faults.error(503, path=f"/namespaces/{namespace}/configmaps", method="GET")
    recorder = Recorder()
    watcher = make_watcher(kube, namespace, recorder, backoff_base=0.05, backoff_cap=0.4)
    try:
        watched(watcher)
        wait_for(lambda: watcher.failures >= 3, what="failed attempts")
        assert recorder.syncs == []
        assert watcher.last_error.status == 503 and watcher.last_error.retryable
    finally:
        devcluster.faults.remove(rule)

    wait_for(lambda: recorder.syncs, timeout=5, what="the sync after the outage")
    kube.delete_namespace(namespace)


def test_it_stops_within_a_second(kubeconfig_path, namespace):
    kube = client(kubeconfig_path)
    watchers = [make_watcher(kube, namespace, Recorder(), timeout_seconds=300) for _ in range(3)]
    stop = threading.Event()
    threads = start_watchers(watchers, stop)
    wait_for(lambda: all(w.watches for w in watchers), what="open watches")
    time.sleep(0.2)

    started = time.monotonic()
    stop.set()
    for thread in threads:
        thread.join(2)

    assert not any(t.is_alive() for t in threads)
    assert time.monotonic() - started < 1


def test_it_relists_after_a_failing_handler(kubeconfig_path, namespace, watched):
    kube = client(kubeconfig_path)
    recorder = Recorder()
    failures = []

    def flaky(event_type, obj):
        if obj["metadata"]["name"] == "poison" and not failures:
            failures.append(obj)
            raise RuntimeError("database is locked")
        recorder.on_event(event_type, obj)

    watcher = ResourceWatcher(
        kube, "v1", "ConfigMap", namespace=namespace, label_selector="app.kubernetes.io/managed-by=ale",
        on_sync=recorder.on_sync, on_event=flaky,
        backoff_base=0.05, backoff_cap=0.1,
    )
    watched(watcher)
    wait_for(lambda: recorder.syncs, what="the first sync")

    kube.apply([make_configmap(namespace, "poison")])

    wait_for(lambda: len(recorder.syncs) == 2, what="the relist after the failure")
    assert recorder.syncs[1] == ["poison"]


def test_it_spreads_backoff_with_a_cap():
    rng = random.Random(4)
    delays = [backoff_delay(n, base=0.5, cap=8, rng=rng) for n in range(1, 12)]

    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 8 for d in delays)
    assert delays[-1] >= 4
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered, not in step
