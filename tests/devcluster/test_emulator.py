"""Emulator behaviour that the contract suite cannot pin down portably: history limits, logs and exec wiring."""
from __future__ import annotations

import json

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from devcluster import DevCluster
from tests.contract.support import wait_for



def _pod(name: str, *containers: dict) -> dict:
    return {"metadata": {"name": name}, "spec": {"containers": list(containers)}}


def _running(core, ns: str, name: str):
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.status.phase == "Running" and all(
        s.state.running for s in pod.status.container_statuses or [None]) else None


def test_it_expires_watches_older_than_its_history(tmp_path):
    from kubernetes import config

    with DevCluster(pod_ready_seconds=0.2, history_size=20) as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        core = client.CoreV1Api(api)
        start = core.list_namespaced_config_map("default").metadata.resource_version
        for i in range(30):
            core.create_namespaced_config_map("default", {"metadata": {"name": f"c{i}"}})
        with pytest.raises(ApiException) as info:
            for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=start,
                                          timeout_seconds=2):
                pass
        assert info.value.status == 410
        assert info.value.reason.startswith(f"Expired: too old resource version: {start} (")
        page = core.list_namespaced_config_map("default", limit=5)
        for i in range(30):
            core.delete_namespaced_config_map(f"c{i}", "default")
        with pytest.raises(ApiException) as info:
            core.list_namespaced_config_map("default", limit=5, _continue=page.metadata.var_continue)
        assert info.value.status == 410
        api.close()


def test_a_list_in_pages_holds_every_object_once_as_it_was_when_it_began(tmp_path):
    """Pages follow the first page's order, also across namespaces whose names begin alike
    ("pg" and "pg-x"), and show the list as it was at its first page whatever changed since."""
    from kubernetes import config

    with DevCluster() as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        core = client.CoreV1Api(api)
        for namespace in ("pg", "pg-x"):
            core.create_namespace({"metadata": {"name": namespace}})
            for i in range(3):
                core.create_namespaced_config_map(namespace, {"metadata": {"name": f"c{i}", "labels": {"paged": "yes"}}})
        seen, token, remaining = [], None, []
        while True:
            page = core.list_config_map_for_all_namespaces(label_selector="paged=yes", limit=2, _continue=token)
            seen += [(item.metadata.namespace, item.metadata.name) for item in page.items]
            if not seen or len(seen) == 2:
                # Changed after the first page: the list still shows what was.
                core.delete_namespaced_config_map("c2", "pg-x")
                core.create_namespaced_config_map("pg", {"metadata": {"name": "c9", "labels": {"paged": "yes"}}})
            token = page.metadata.var_continue
            if not token:
                break
        assert sorted(seen) == [(ns, f"c{i}") for ns in ("pg", "pg-x") for i in range(3)]
        assert len(seen) == len(set(seen))

        everything = [item.metadata.name for item in core.list_namespaced_config_map("pg-x").items]
        first = core.list_namespaced_config_map("pg-x", limit=1)
        assert first.metadata.remaining_item_count == len(everything) - 1
        rest = core.list_namespaced_config_map("pg-x", limit=len(everything), _continue=first.metadata.var_continue)
        assert [item.metadata.name for item in first.items + rest.items] == everything
        assert "c2" not in everything
        api.close()


def test_a_pod_watch_resumes_after_a_burst_of_changes_to_other_kinds(tmp_path):
    """The history is kept per kind, like kube-apiserver's watch cache per resource: 5,000
    changes to ConfigMaps (an event storm on a real cluster) do not push the pods' recent
    changes out, so a pod watch that reconnects resumes instead of getting 410 and relisting."""
    from kubernetes import config

    with DevCluster(pod_ready_seconds=0.2) as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "burst"}})
        start = core.list_namespaced_pod("burst").metadata.resource_version
        store = dc.server.store

        def burst() -> None:
            for i in range(5000):
                store.put("configmaps", {"metadata": {"name": f"c{i % 50}", "namespace": "burst"}, "data": {"i": str(i)}})

        dc.call(burst)
        core.create_namespaced_pod("burst", _pod("after", {"name": "app", "image": "nginx:1.27"}))

        seen = []
        for event in watch.Watch().stream(core.list_namespaced_pod, "burst", resource_version=start, timeout_seconds=2):
            seen.append((event["type"], event["object"].metadata.name))
            break
        assert seen == [("ADDED", "after")]
        api.close()


def test_a_pod_watch_resumes_after_a_burst_of_5000_pod_changes(tmp_path):
    from kubernetes import config

    with DevCluster(pod_ready_seconds=0.2) as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "burst"}})
        start = core.list_namespaced_pod("burst").metadata.resource_version
        store = dc.server.store

        def burst() -> None:
            # What 10,000 pods starting put through the pods' history, in one go.
            for i in range(5000):
                store.put("pods", {"metadata": {"name": f"p{i}", "namespace": "burst", "uid": f"u{i}"},
                                   "spec": {"nodeName": "gone", "containers": [{"name": "app", "image": "x"}]},
                                   "status": {"phase": "Pending"}})

        dc.call(burst)

        names = []
        for event in watch.Watch().stream(core.list_namespaced_pod, "burst", resource_version=start, timeout_seconds=2):
            names.append(event["object"].metadata.name)
            if len(names) == 5000:
                break
        assert names[0] == "p0" and names[-1] == "p4999"
        api.close()


def test_it_serves_logs_of_a_running_container(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("web", {"name": "app", "image": "nginx:1.27"}))
    wait_for(lambda: _running(core, ns, "web"), timeout=20)
    text = wait_for(lambda: core.read_namespaced_pod_log("web", ns), timeout=10, message="log output")
    assert isinstance(text, str) and text


def test_it_asks_for_a_container_name_when_a_pod_has_several(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("two", {"name": "app", "image": "nginx:1.27"},
                                        {"name": "sidecar", "image": "busybox:1.36"}))
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("two", ns)
    assert info.value.status == 400
    assert json.loads(info.value.body)["message"] == \
        "a container name must be specified for pod two, choose one of: [app sidecar]"
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("two", ns, container="nope")
    assert json.loads(info.value.body)["message"] == "container nope is not valid for pod two"
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("missing", ns)
    assert info.value.status == 404


def test_it_refuses_logs_of_a_container_that_never_started(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("pull", {"name": "app", "image": "example.invalid/does-not-exist:1"}))
    wait_for(lambda: (core.read_namespaced_pod("pull", ns).status.container_statuses or [None])[0] is not None and
             core.read_namespaced_pod("pull", ns).status.container_statuses[0].state.waiting.reason ==
             "ImagePullBackOff", timeout=20)
    with pytest.raises(ApiException) as info:
        core.read_namespaced_pod_log("pull", ns)
    assert info.value.status == 400
    assert json.loads(info.value.body)["message"] == \
        'container "app" in pod "pull" is waiting to start: trying and failing to pull image'


def test_it_keeps_the_previous_run_of_a_crashing_container(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("crashy", {"name": "app", "image": "example.test/crash:1"}))
    wait_for(lambda: (core.read_namespaced_pod("crashy", ns).status.container_statuses or [None])[0] is not None
             and core.read_namespaced_pod("crashy", ns).status.container_statuses[0].restart_count >= 1, timeout=20)
    previous = core.read_namespaced_pod_log("crashy", ns, previous=True)
    assert isinstance(previous, str)


def test_it_execs_only_into_running_containers(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("shell", {"name": "app", "image": "busybox:1.36"}))
    wait_for(lambda: _running(core, ns, "shell"), timeout=20)
    out = stream(core.connect_get_namespaced_pod_exec, "shell", ns, command=["sh", "-c", "echo hi > f; cat f"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out.strip() == "hi"
    core.create_namespaced_pod(ns, _pod("stuck", {"name": "app", "image": "example.invalid/does-not-exist:1"}))
    wait_for(lambda: core.read_namespaced_pod("stuck", ns).status.container_statuses, timeout=20)
    with pytest.raises(Exception) as info:
        stream(core.connect_get_namespaced_pod_exec, "stuck", ns, command=["true"], stderr=True, stdin=False,
               stdout=True, tty=False)
    assert "400" in str(info.value) or "container not found" in str(info.value)


def test_it_returns_deleted_pods_and_terminates_them_gracefully(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("bye", {"name": "app", "image": "nginx:1.27"}))
    wait_for(lambda: _running(core, ns, "bye"), timeout=20)
    answer = core.delete_namespaced_pod("bye", ns)
    assert answer.metadata.deletion_timestamp and answer.metadata.deletion_grace_period_seconds == 30
    wait_for(lambda: not core.list_namespaced_pod(ns, field_selector="metadata.name=bye").items, timeout=20)
    killing = core.list_namespaced_event(ns, field_selector="involvedObject.name=bye,reason=Killing").items
    assert killing and killing[0].message == "Stopping container app"


def test_it_counts_repeated_events(devcluster_api, ns):
    core = client.CoreV1Api(devcluster_api)
    core.create_namespaced_pod(ns, _pod("again", {"name": "app", "image": "example.test/crash:1"}))
    back_off = wait_for(lambda: [e for e in core.list_namespaced_event(
        ns, field_selector="involvedObject.name=again,reason=Started").items if e.count >= 2], timeout=30,
                        message="a Started event counted twice")
    assert back_off[0].last_timestamp >= back_off[0].first_timestamp


def test_it_gives_load_balancers_and_ingresses_an_address(devcluster_api, ns):
    core, net = client.CoreV1Api(devcluster_api), client.NetworkingV1Api(devcluster_api)
    svc = core.create_namespaced_service(ns, {"metadata": {"name": "tcp"}, "spec": {
        "type": "LoadBalancer", "selector": {"app": "db"}, "ports": [{"name": "pg", "port": 5432}]}})
    assert svc.spec.cluster_ip.startswith("10.") and 30000 <= svc.spec.ports[0].node_port <= 32767
    lb = wait_for(lambda: core.read_namespaced_service_status("tcp", ns).status.load_balancer.ingress, timeout=10)
    assert lb[0].ip == "127.0.0.1"
    replaced = core.read_namespaced_service("tcp", ns)
    replaced.spec.cluster_ip = None
    replaced.spec.cluster_ips = None
    replaced.spec.ports[0].node_port = None
    kept = core.replace_namespaced_service("tcp", ns, replaced)
    assert kept.spec.cluster_ip == svc.spec.cluster_ip and kept.spec.ports[0].node_port == svc.spec.ports[0].node_port
    net.create_namespaced_ingress(ns, {"metadata": {"name": "web"}, "spec": {"rules": [{"host": "a.example.test",
        "http": {"paths": [{"path": "/", "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}})
    ing = wait_for(lambda: net.read_namespaced_ingress("web", ns).status.load_balancer.ingress, timeout=10)
    assert ing[0].ip == "127.0.0.1"


def test_a_job_fails_at_its_deadline_with_nothing_else_to_wake_its_controller(tmp_path):
    """The job controller syncs a Job again when its activeDeadlineSeconds passes, as the real one
    queues its key for then: the pod runs quietly meanwhile, and the periodic resync is stopped."""
    from kubernetes import config

    with DevCluster(pod_ready_seconds=0.2) as dc:
        resync = dc.server.controllers.tasks[1]
        dc._loop.call_soon_threadsafe(resync.cancel)
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        batch = client.BatchV1Api(api)
        wait_for(resync.done, timeout=5, message="the resync stopped")
        batch.create_namespaced_job("default", {"metadata": {"name": "slow"}, "spec": {
            "activeDeadlineSeconds": 2, "backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "build", "image": "busybox:1.36", "command": ["sleep", "600"]}]}}}})

        def failed():
            job = batch.read_namespaced_job_status("slow", "default")
            return next((c for c in job.status.conditions or [] if c.type == "Failed"), None)

        condition = wait_for(failed, timeout=20, message="the deadline")
        assert condition.reason == "DeadlineExceeded", condition
        wait_for(lambda: not client.CoreV1Api(api).list_namespaced_pod("default").items, timeout=20,
                 message="its pod gone")


def test_a_restarted_cluster_still_knows_which_service_addresses_are_taken(tmp_path):
    from kubernetes import config

    service = {"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    with DevCluster(data_dir=tmp_path / "state") as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        made = client.CoreV1Api(api).create_namespaced_service("default", service)
        api.close()
    ip, port = made.spec.cluster_ip, made.spec.ports[0].node_port

    with DevCluster(data_dir=tmp_path / "state") as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path / "kc")))
        core = client.CoreV1Api(api)
        with pytest.raises(ApiException) as info:
            core.create_namespaced_service("default", {"metadata": {"name": "copy"},
                                                       "spec": {"clusterIP": ip, "ports": [{"port": 80}]}})
        assert info.value.status == 422 and "provided IP is already allocated" in info.value.body
        with pytest.raises(ApiException) as info:
            core.create_namespaced_service("default", {"metadata": {"name": "copy"}, "spec": {
                "type": "NodePort", "ports": [{"port": 80, "nodePort": port}]}})
        assert info.value.status == 422 and "provided port is already allocated" in info.value.body
        api.close()
