"""clusters.client against the devcluster, over HTTP with the official client underneath."""

from __future__ import annotations

import os
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from clusters.client import KubeClient, client_for, forget_clients
from clusters.errors import ClusterError
from clusters.models import Cluster
from devcluster import kubeconfig_text
from tests.clusters.helpers import (
    api_port,
    compact,
    connections_to,
    make_configmap,
    make_deployment,
    running_pods,
    wait_for,
    wait_for_running_pod,
)


@pytest.fixture
def kube(kubeconfig_path, settings) -> KubeClient:
    settings.DEVCLUSTER_KUBECONFIG = kubeconfig_path
    return client_for(Cluster(name="local", connection="devcluster"))


@pytest.fixture
def faulty(devcluster) -> KubeClient:
    """A client for the embedded devcluster, whose faults the test controls."""
    devcluster.faults.clear()
    yield KubeClient.from_kubeconfig(kubeconfig_text(devcluster.url, devcluster.token), name="local", request_timeout=(2, 2))
    devcluster.faults.clear()


@pytest.fixture
def faulty_namespace(faulty) -> str:
    name = f"faults-{os.getpid()}-{time.monotonic_ns() % 10**9}"
    faulty.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}])
    yield name
    faulty.delete_namespace(name)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kubeconfig_for(server: str) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "c", "cluster": {"server": server}}],
            "users": [{"name": "u", "user": {"token": "t"}}],
            "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
            "current-context": "x",
        }
    )


# --- objects ---------------------------------------------------------------------------------------


def test_it_applies_idempotently(kube, namespace):
    manifest = make_configmap(namespace, "settings", {"color": "blue"})

    first = kube.apply([manifest])[0]
    second = kube.apply([manifest])[0]

    assert first["data"] == {"color": "blue"}
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    managers = {(m["manager"], m["operation"]) for m in second["metadata"]["managedFields"]}
    assert ("ale", "Apply") in managers


def test_it_applies_in_order_and_reads_back_by_label(kube):
    name = f"ale-order-{time.monotonic_ns() % 10**9}"
    manifests = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
        make_configmap(name, "one", tier="a"),
        make_configmap(name, "two", tier="b"),
        make_configmap(name, "three", tier="a"),
    ]
    try:
        applied = kube.apply(manifests)

        assert [o["kind"] for o in applied] == ["Namespace", "ConfigMap", "ConfigMap", "ConfigMap"]
        items, version = kube.list("v1", "ConfigMap", namespace=name, label_selector="tier=a")
        assert sorted(i["metadata"]["name"] for i in items) == ["one", "three"]
        assert all(i["apiVersion"] == "v1" and i["kind"] == "ConfigMap" for i in items)
        assert version
        assert kube.get("v1", "ConfigMap", "two", name)["metadata"]["labels"]["tier"] == "b"
        assert kube.get("v1", "ConfigMap", "missing", name) is None
        assert kube.get("v1", "Namespace", name)["metadata"]["name"] == name
    finally:
        kube.delete_namespace(name)


def test_it_follows_continue_pages(kube, namespace):
    kube.apply(make_configmap(namespace, f"page-{i}") for i in range(7))

    items, version = kube.list("v1", "ConfigMap", namespace=namespace, label_selector="app.kubernetes.io/managed-by=ale", limit=2)

    assert sorted(i["metadata"]["name"] for i in items) == [f"page-{i}" for i in range(7)]
    assert version


def test_it_deletes_and_counts_a_missing_object_as_deleted(kube, namespace):
    kube.apply([make_configmap(namespace, "doomed")])

    kube.delete("v1", "ConfigMap", "doomed", namespace)
    kube.delete("v1", "ConfigMap", "doomed", namespace)

    assert kube.get("v1", "ConfigMap", "doomed", namespace) is None


def test_it_deletes_a_namespace(kube):
    name = f"ale-gone-{time.monotonic_ns() % 10**9}"
    kube.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, make_configmap(name, "x")])

    kube.delete_namespace(name)
    kube.delete_namespace(name)

    def gone_or_terminating():
        ns = kube.get("v1", "Namespace", name)
        return ns is None or ns["status"].get("phase") == "Terminating"

    wait_for(gone_or_terminating, what="the namespace to go")
    wait_for(lambda: kube.get("v1", "Namespace", name) is None, timeout=30, what="the namespace to be removed")


def test_it_scales_to_zero_and_back(kube, namespace):
    kube.apply([make_deployment(namespace, "web", replicas=1)])
    wait_for_running_pod(kube, namespace, "web")

    scale = kube.scale(namespace, "web", 0)

    assert scale["spec"]["replicas"] == 0
    wait_for(lambda: not running_pods(kube, namespace, "web") and not kube.list(
        "v1", "Pod", namespace=namespace, label_selector="app.kubernetes.io/name=web")[0], what="no pods")

    kube.scale(namespace, "web", 1)
    wait_for_running_pod(kube, namespace, "web")

    # The next full apply takes spec.replicas back, and keeps every other field.
    deployment = kube.apply([make_deployment(namespace, "web", replicas=2)])[0]
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/ale-demo/web:1.0"
    wait_for(lambda: len(running_pods(kube, namespace, "web")) == 2, what="two pods")


def test_it_reads_the_events_of_a_namespace(kube, namespace):
    kube.apply([make_deployment(namespace, "web")])
    wait_for_running_pod(kube, namespace, "web")

    events = wait_for(lambda: kube.events(namespace), what="events")
    pod_events = kube.events(namespace, field_selector="involvedObject.kind=Pod")

    assert {e["reason"] for e in events} & {"Scheduled", "Pulled", "Started", "ScalingReplicaSet"}
    assert pod_events and all(e["involvedObject"]["kind"] == "Pod" for e in pod_events)
    assert all(e["metadata"]["namespace"] == namespace for e in events)


# --- logs ------------------------------------------------------------------------------------------


def test_it_follows_a_log_as_lines_arrive(kube, namespace):
    kube.apply([make_deployment(namespace, "gen", image="ghcr.io/ale-demo/loggen:1", env={"LOG_RATE": "20"})])
    pod = wait_for_running_pod(kube, namespace, "gen")["metadata"]["name"]

    stream = kube.open_log_stream(namespace, pod, tail_lines=1)
    seen = b""
    started = time.monotonic()
    try:
        for chunk in stream.iter_chunks():
            seen += chunk
            if seen.count(b"\n") >= 5:
                break
    finally:
        stream.close()

    lines = seen.decode().splitlines()
    assert len(lines) >= 5 and all("loggen seq=" in line for line in lines)
    numbers = [int(line.split("seq=")[1].split()[0]) for line in lines]
    assert numbers == sorted(numbers) and numbers[-1] > numbers[0]
    assert time.monotonic() - started < 5


def test_it_stops_a_followed_log_from_another_thread_and_frees_the_connection(kubeconfig_path):
    kube = KubeClient.from_kubeconfig(Path(kubeconfig_path).read_text(), name="local")
    port = api_port(kube)
    namespace = f"ale-logs-{time.monotonic_ns() % 10**9}"
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            # One line a minute: the reader sits in a blocking read when it is closed.
            make_deployment(namespace, "quiet", image="ghcr.io/ale-demo/loggen:1", env={"LOG_RATE": "1/60"}),
        ]
    )
    try:
        pod = wait_for_running_pod(kube, namespace, "quiet")["metadata"]["name"]
        kube.close()  # no idle pooled connection left: the stream opens a new one
        before = connections_to(port)
        stream = kube.open_log_stream(namespace, pod)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.extend(stream.iter_chunks()))
        reader.start()
        time.sleep(0.5)
        assert reader.is_alive()
        opened = connections_to(port) - before
        assert len(opened) == 1

        closed_at = time.monotonic()
        stream.close()
        reader.join(2)

        assert not reader.is_alive()
        assert time.monotonic() - closed_at < 1
        assert stream.closed
        assert not opened & connections_to(port)
        stream.close()  # idempotent
        assert kube.get("v1", "Namespace", namespace)  # the pool still works
    finally:
        kube.delete_namespace(namespace)


def test_it_reads_the_tail_of_a_log_without_following(kube, namespace):
    kube.apply([make_deployment(namespace, "gen", image="ghcr.io/ale-demo/loggen:1", env={"LOG_RATE": "50"})])
    pod = wait_for_running_pod(kube, namespace, "gen")["metadata"]["name"]
    time.sleep(0.5)

    stream = kube.open_log_stream(namespace, pod, follow=False, tail_lines=3, timestamps=True)
    text = b"".join(stream.iter_chunks()).decode()

    lines = text.splitlines()
    assert len(lines) == 3
    assert all(line[:4].isdigit() and "loggen seq=" in line for line in lines)


def test_it_reports_a_missing_pod_log_as_not_found(kube, namespace):
    with pytest.raises(ClusterError) as caught:
        kube.open_log_stream(namespace, "no-such-pod", follow=False)

    assert caught.value.status == 404
    assert not caught.value.retryable
    assert "no-such-pod" in caught.value.user_message


# --- exec ------------------------------------------------------------------------------------------


def read_until(session, needle: bytes, timeout: float = 5.0) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        assert time.monotonic() < deadline, f"{needle!r} not in {seen!r}"
        for _, data in session.read(timeout=0.2):
            seen += data
    return seen


def test_it_runs_a_shell_with_stdin_and_resize(kube, namespace):
    kube.apply([make_deployment(namespace, "web")])
    pod = wait_for_running_pod(kube, namespace, "web")["metadata"]["name"]

    session = kube.open_exec(namespace, pod, command=["sh"], tty=True)
    try:
        session.write_stdin("echo hello-$((20 + 22))\n")
        assert b"hello-42" in read_until(session, b"hello-42")

        session.resize(97, 31)
        time.sleep(0.2)
        session.write_stdin(b"stty size\n")
        assert b"31 97" in read_until(session, b"31 97")

        session.write_stdin("exit\n")
        wait_for(lambda: session.read(0.1) is not None and not session.is_open(), what="the shell to end")
        assert session.returncode == 0
    finally:
        session.close()
    assert not session.is_open()


def test_it_reports_the_exit_status_of_a_command(kube, namespace):
    kube.apply([make_deployment(namespace, "web")])
    pod = wait_for_running_pod(kube, namespace, "web")["metadata"]["name"]

    session = kube.open_exec(namespace, pod, command=["sh", "-c", "echo out; echo err >&2; exit 3"], tty=False)
    output: dict[int, bytes] = {}
    try:
        deadline = time.monotonic() + 5
        while session.is_open() and time.monotonic() < deadline:
            for channel, data in session.read(timeout=0.2):
                output[channel] = output.get(channel, b"") + data
    finally:
        session.close()

    assert output.get(1) == b"out\n"
    assert output.get(2) == b"err\n"
    assert session.returncode == 3


def test_it_closes_an_exec_session_from_another_thread(kube, namespace):
    kube.apply([make_deployment(namespace, "web")])
    pod = wait_for_running_pod(kube, namespace, "web")["metadata"]["name"]
    session = kube.open_exec(namespace, pod, command=["sh"], tty=True)
    stopped = threading.Event()

    def pump():
        while session.is_open():
            session.read(timeout=5)
        stopped.set()

    reader = threading.Thread(target=pump)
    reader.start()
    time.sleep(0.3)
    session.close()

    assert stopped.wait(2)
    reader.join(1)
    assert session.read(0.1) == []


def test_it_reports_exec_into_a_missing_pod_as_not_found(kube, namespace):
    with pytest.raises(ClusterError) as caught:
        kube.open_exec(namespace, "no-such-pod", command=["true"])

    assert caught.value.status == 404
    assert not caught.value.retryable


# --- watch -----------------------------------------------------------------------------------------


def test_it_watches_added_modified_deleted_and_bookmarks(kube, namespace):
    _, version = kube.list("v1", "ConfigMap", namespace=namespace)
    kube.apply([make_configmap(namespace, "watched", {"v": "1"})])
    kube.apply([make_configmap(namespace, "watched", {"v": "2"})])
    kube.delete("v1", "ConfigMap", "watched", namespace)

    stream = kube.watch("v1", "ConfigMap", namespace=namespace, resource_version=version, timeout_seconds=5)
    events = []
    with stream:
        for event_type, obj in stream:
            events.append((event_type, obj))
            if event_type == "BOOKMARK" and any(t == "DELETED" for t, _ in events):
                break

    kinds = [(t, o["metadata"].get("name")) for t, o in events if t != "BOOKMARK"]
    assert kinds == [("ADDED", "watched"), ("MODIFIED", "watched"), ("DELETED", "watched")]
    assert events[1][1]["data"] == {"v": "2"}
    bookmarks = [o for t, o in events if t == "BOOKMARK"]
    assert bookmarks, "the server sent no bookmark within the watch"
    assert int(bookmarks[-1]["metadata"]["resourceVersion"]) >= int(events[2][1]["metadata"]["resourceVersion"])


def test_it_reports_a_watch_cut_by_the_server(devcluster, faulty, faulty_namespace):
    _, version = faulty.list("v1", "ConfigMap", namespace=faulty_namespace)
    ended = faulty.watch("v1", "ConfigMap", namespace=faulty_namespace, resource_version=version, timeout_seconds=30)
    time.sleep(0.2)
    devcluster.faults.drop_watches(abrupt=False)
    assert [t for t, _ in ended if t != "BOOKMARK"] == []  # an ended response is the end of the watch

    cut = faulty.watch("v1", "ConfigMap", namespace=faulty_namespace, resource_version=version, timeout_seconds=30)
    time.sleep(0.2)
    devcluster.faults.drop_watches(abrupt=True)
    with pytest.raises(ClusterError) as caught:
        list(cut)

    assert caught.value.retryable and caught.value.status is None


def test_it_ends_a_watch_at_its_timeout(kube, namespace):
    _, version = kube.list("v1", "ConfigMap", namespace=namespace)
    started = time.monotonic()

    events = list(kube.watch("v1", "ConfigMap", namespace=namespace, resource_version=version, timeout_seconds=1, allow_bookmarks=False))

    assert events == []
    assert 0.5 < time.monotonic() - started < 5


def test_it_raises_410_for_an_expired_resource_version(devcluster, faulty, faulty_namespace):
    _, version = faulty.list("v1", "ConfigMap", namespace=faulty_namespace)
    faulty.apply([make_configmap(faulty_namespace, "later")])
    compact(devcluster)

    with pytest.raises(ClusterError) as caught:
        list(faulty.watch("v1", "ConfigMap", namespace=faulty_namespace, resource_version=version, timeout_seconds=5))

    assert caught.value.status == 410
    assert caught.value.expired and caught.value.reason == "Expired"


# --- the client cache ------------------------------------------------------------------------------


def test_it_shares_one_client_per_cluster_until_the_kubeconfig_changes(kubeconfig_path, settings, tmp_path):
    copy = tmp_path / "kubeconfig"
    copy.write_text(Path(kubeconfig_path).read_text())
    settings.DEVCLUSTER_KUBECONFIG = copy
    cluster = Cluster(pk=9001, name="local", connection="devcluster")
    try:
        first = client_for(cluster)
        assert client_for(cluster) is first
        assert client_for(Cluster(pk=9001, name="local", connection="devcluster")) is first

        os.utime(copy, ns=(time.time_ns(), time.time_ns() + 10**9))
        second = client_for(cluster)

        assert second is not first
        assert second.get("v1", "Namespace", "default") is not None
        assert second.configuration.connection_pool_maxsize == settings.KUBE_POOL_SIZE
        assert second.request_timeout == tuple(float(t) for t in settings.KUBE_REQUEST_TIMEOUT)
    finally:
        forget_clients()


def test_it_builds_a_client_from_a_stored_kubeconfig(kubeconfig_path):
    cluster = Cluster(name="prod", connection="kubeconfig", kubeconfig=Path(kubeconfig_path).read_text())
    try:
        kube = client_for(cluster)
        assert kube.get("v1", "Namespace", "default")["metadata"]["name"] == "default"
    finally:
        forget_clients()


def test_a_static_token_is_sent_without_setting_up_the_client_again_per_request(kubeconfig_path):
    kube = KubeClient.from_kubeconfig(Path(kubeconfig_path).read_text(), name="local")

    assert kube.configuration.refresh_api_key_hook is None
    for _ in range(2):
        assert kube.get("v1", "Namespace", "default")["metadata"]["name"] == "default"


def test_a_token_that_expires_is_renewed_before_a_request(kubeconfig_path, tmp_path):
    """An exec credential plugin's token with an expiry: the client runs the plugin again once
    it has expired (here: at once), and the requests carry the renewed token."""
    config = yaml.safe_load(Path(kubeconfig_path).read_text())
    token = config["users"][0]["user"].pop("token")
    runs = tmp_path / "runs"
    plugin = tmp_path / "credential"
    plugin.write_text(
        "#!/bin/sh\n"
        f"echo run >> {runs}\n"
        'echo \'{"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential", '
        f'"status": {{"token": "{token}", "expirationTimestamp": "2020-01-01T00:00:00Z"}}}}\'\n'
    )
    plugin.chmod(0o755)
    config["users"][0]["user"]["exec"] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": str(plugin),
        "interactiveMode": "Never",
    }
    kube = KubeClient.from_kubeconfig(config, name="local")
    loaded = len(runs.read_text().split())

    assert kube.get("v1", "Namespace", "default")["metadata"]["name"] == "default"
    assert kube.get("v1", "Namespace", "default") is not None
    assert len(runs.read_text().split()) == loaded + 2


def test_it_waits_for_a_devcluster_that_has_not_written_its_kubeconfig(settings, tmp_path):
    settings.DEVCLUSTER_KUBECONFIG = tmp_path / "not-yet" / "kubeconfig"

    with pytest.raises(ClusterError) as caught:
        client_for(Cluster(name="local", connection="devcluster"))

    assert caught.value.retryable and caught.value.reason == "Unreachable"
    assert caught.value.user_message == "The cluster 'local' cannot be reached."


def test_it_explains_an_in_cluster_connection_outside_a_cluster(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)

    with pytest.raises(ClusterError) as caught:
        client_for(Cluster(name="home", connection="in_cluster"))

    assert not caught.value.retryable and caught.value.reason == "InvalidConfiguration"
    assert "service account" in caught.value.user_message


def test_it_serves_many_threads_with_one_small_pool(kubeconfig_path, namespace):
    kube = KubeClient.from_kubeconfig(Path(kubeconfig_path).read_text(), name="local", pool_size=4)

    def work(i: int) -> str:
        kube.apply([make_configmap(namespace, f"cm-{i}", {"i": str(i)})])
        return kube.get("v1", "ConfigMap", f"cm-{i}", namespace)["data"]["i"]

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(work, range(96)))

    assert results == [str(i) for i in range(96)]
    assert len(kube.list("v1", "ConfigMap", namespace=namespace, label_selector="app.kubernetes.io/managed-by=ale")[0]) == 96


def test_it_refuses_an_unusable_kubeconfig():
    with pytest.raises(ClusterError) as caught:
        client_for(Cluster(name="broken", connection="kubeconfig", kubeconfig="clusters: [oops"))

    assert not caught.value.retryable
    assert caught.value.reason == "InvalidConfiguration"


# --- failures --------------------------------------------------------------------------------------


def test_it_reports_an_unreachable_cluster_as_retryable():
    cluster = Cluster(name="local", connection="kubeconfig", kubeconfig=kubeconfig_for(f"http://127.0.0.1:{closed_port()}"))
    try:
        kube = client_for(cluster)
        started = time.monotonic()
        with pytest.raises(ClusterError) as caught:
            kube.list("v1", "Namespace")
    finally:
        forget_clients()

    error = caught.value
    assert error.retryable and error.status is None and error.reason == "Unreachable"
    assert error.user_message == "The cluster 'local' cannot be reached."
    assert time.monotonic() - started < 1  # no hidden urllib3 retries


def test_it_reports_429_as_retryable_with_retry_after(devcluster, faulty, faulty_namespace):
    devcluster.faults.throttle(retry_after=7, path="/configmaps", count=1)

    with pytest.raises(ClusterError) as caught:
        faulty.apply([make_configmap(faulty_namespace, "busy")])

    assert caught.value.status == 429 and caught.value.retryable
    assert caught.value.retry_after == 7
    assert faulty.apply([make_configmap(faulty_namespace, "busy")])[0]["metadata"]["name"] == "busy"


def test_it_reports_500_as_retryable(devcluster, faulty, faulty_namespace):
    devcluster.faults.error(500, path="/configmaps", method="GET", count=1)

    with pytest.raises(ClusterError) as caught:
        faulty.list("v1", "ConfigMap", namespace=faulty_namespace)

    assert caught.value.status == 500 and caught.value.retryable
    assert "'local'" in caught.value.user_message


def test_it_reports_a_conflict_on_apply_as_retryable(devcluster, faulty, faulty_namespace):
    devcluster.faults.conflict(path="/configmaps/contended", count=1)

    with pytest.raises(ClusterError) as caught:
        faulty.apply([make_configmap(faulty_namespace, "contended")])

    assert caught.value.status == 409 and caught.value.retryable
    assert caught.value.reason == "Conflict"
    assert faulty.apply([make_configmap(faulty_namespace, "contended")])


def test_it_reports_an_invalid_object_as_permanent_with_the_field(kube, namespace):
    with pytest.raises(ClusterError) as caught:
        kube.apply([make_deployment(namespace, "web", replicas=-1)])

    error = caught.value
    assert error.status == 422 and not error.retryable and error.reason == "Invalid"
    assert "spec.replicas" in error.user_message


def test_it_reports_an_exceeded_quota_as_permanent(kube, namespace):
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "ale-allocation", "namespace": namespace},
                "spec": {"hard": {"configmaps": "2"}},
            }
        ]
    )
    wait_for(
        lambda: ((kube.get("v1", "ResourceQuota", "ale-allocation", namespace) or {}).get("status") or {}).get("used"),
        what="quota usage",
    )

    with pytest.raises(ClusterError) as caught:
        kube.apply(make_configmap(namespace, f"cm-{i}") for i in range(5))

    error = caught.value
    assert error.status == 403 and not error.retryable and error.reason == "Forbidden"
    assert "exceeded quota" in error.user_message


def test_it_reports_latency_beyond_the_read_timeout_as_retryable(devcluster, faulty_namespace):
    slow = KubeClient.from_kubeconfig(kubeconfig_text(devcluster.url, devcluster.token), name="local", request_timeout=(2, 0.5))
    devcluster.faults.latency(3, path="/configmaps", method="GET", count=1)
    started = time.monotonic()

    with pytest.raises(ClusterError) as caught:
        slow.list("v1", "ConfigMap", namespace=faulty_namespace)

    assert caught.value.retryable and caught.value.reason == "Timeout"
    assert caught.value.user_message == "The cluster 'local' did not answer in time."
    assert time.monotonic() - started < 1.5


def test_it_rejects_a_kind_it_does_not_manage(kube):
    with pytest.raises(ValueError):
        kube.get("v1", "Node", "n1")
