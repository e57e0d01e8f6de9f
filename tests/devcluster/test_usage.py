"""What pods use on the devcluster: the usage model, the leak/OOM cycle and LOG_RATE, through metrics.k8s.io."""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from devcluster import DevCluster
from devcluster.usage import LEAK_BASE_BYTES, MIB, container_usage, seconds_until_oom
from tests.contract.support import wait_for
from tests.fixtures.devcluster import REPO_ROOT

LIMIT_MIB = 64
LEAK_MIB_PER_SECOND = 24  # 16 Mi to 64 Mi in 2 s


def _usage(image: str, env: dict[str, str] | None = None, *, elapsed: float, limit: str | None = None,
           default_leak_mib: float = 1.0):
    resources = {"limits": {"memory": limit}} if limit else {}
    return container_usage(pod="p", container="app", image=image, env=env or {}, resources=resources,
                           started_at=1000.0, now=1000.0 + elapsed, default_leak_mib=default_leak_mib)


def test_a_leak_grows_at_its_rate_and_is_killed_at_its_limit():
    assert _usage("acme/leaky:1", {"LEAK_MIB_PER_SECOND": "8"}, elapsed=0, limit="64Mi").memory_bytes == LEAK_BASE_BYTES
    assert _usage("acme/leaky:1", {"LEAK_MIB_PER_SECOND": "8"}, elapsed=1, limit="64Mi").memory_bytes == 24 * MIB
    assert _usage("acme/leaky:1", {"LEAK_MIB_PER_SECOND": "8"}, elapsed=100, limit="64Mi").memory_bytes == 64 * MIB
    assert seconds_until_oom("acme/leaky:1", {"LEAK_MIB_PER_SECOND": "8"}, {"limits": {"memory": "64Mi"}}, 1.0) == 6.0
    # The server-wide rate when the container names none; no limit: the node's memory is the end.
    assert _usage("acme/leaky:1", elapsed=2, default_leak_mib=3, limit="1Gi").memory_bytes == 22 * MIB
    assert seconds_until_oom("acme/leaky:1", {}, {}, 1024.0) == pytest.approx(16.0 - 16 / 1024)
    assert seconds_until_oom("nginx:1.27", {}, {"limits": {"memory": "64Mi"}}, 1.0) is None


def test_a_log_generator_burns_cpu_in_proportion_to_its_log_rate():
    cores = {rate: _usage("ghcr.io/acme/loggen:1", {"LOG_RATE": str(rate)}, elapsed=5).cpu_cores
             for rate in (100, 1000, 10000)}
    assert cores[1000] - cores[100] == pytest.approx(0.045)
    assert cores[10000] - cores[1000] == pytest.approx(0.45)
    assert _usage("ghcr.io/acme/loggen:1", {"LOG_RATE": "2000"}, elapsed=5).as_metrics()["cpu"] == "102000000n"
    # Silent once LOG_COUNT lines are out; throttled at its CPU limit.
    assert _usage("ghcr.io/acme/loggen:1", {"LOG_RATE": "1000", "LOG_COUNT": "500"}, elapsed=1).cpu_cores == 0.002
    throttled = container_usage(pod="p", container="app", image="loggen", env={"LOG_RATE": "100000"},
                                resources={"limits": {"cpu": "250m"}}, started_at=0, now=1, default_leak_mib=1)
    assert throttled.cpu_cores == 0.25


def test_an_idle_web_server_sits_near_its_floor_and_answers_the_same_within_a_window():
    samples = [_usage("nginx:1.27", elapsed=t) for t in range(0, 600, 7)]
    assert all(0.001 <= s.cpu_cores <= 0.002 and s.memory_bytes < 5 * MIB for s in samples)
    assert _usage("nginx:1.27", elapsed=1) == _usage("nginx:1.27", elapsed=2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[tuple[DevCluster, client.ApiClient]]:
    with DevCluster(pod_ready_seconds=0.2, backoff_seconds=0.3, leak_mib_per_second=LEAK_MIB_PER_SECOND) as dc:
        api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path_factory.mktemp("u") / "kc")))
        yield dc, api
        api.close()


def _pod(name: str, image: str, *, env: dict[str, str] | None = None, memory: str | None = None) -> dict:
    container: dict = {"name": "app", "image": image, "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    if memory:
        container["resources"] = {"limits": {"memory": memory}}
    return {"metadata": {"name": name, "labels": {"app": name}}, "spec": {"containers": [container]}}


def _pod_metrics(api: client.ApiClient, ns: str, name: str) -> dict | None:
    items = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "metrics.k8s.io", "v1beta1", ns, "pods", label_selector=f"app={name}")["items"]
    return items[0] if items else None


def _memory(metrics: dict | None) -> int | None:
    if not metrics:
        return None
    value = metrics["containers"][0]["usage"]["memory"]
    assert value.endswith("Ki"), value
    return int(value[:-2]) * 1024


def test_a_leaking_pod_is_oomkilled_at_its_limit_and_restarts_growing_again(cluster):
    dc, api = cluster
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("default", _pod("leaky", "ghcr.io/acme/memory-leak:1", memory=f"{LIMIT_MIB}Mi"))
    first = wait_for(lambda: _memory(_pod_metrics(api, "default", "leaky")), timeout=20, message="leak metrics")
    later = wait_for(lambda: (m := _memory(_pod_metrics(api, "default", "leaky"))) and m > first and m,
                     timeout=10, message="the leak's memory to grow")
    assert LEAK_BASE_BYTES <= first < later <= LIMIT_MIB * MIB

    def oom_killed():
        status = core.read_namespaced_pod("leaky", "default").status.container_statuses[0]
        return status if status.restart_count >= 1 and status.last_state.terminated else None

    status = wait_for(oom_killed, timeout=20, message="the container to be OOMKilled")
    assert status.last_state.terminated.reason == "OOMKilled"
    assert status.last_state.terminated.exit_code == 137
    events = core.list_namespaced_event("default").items
    oom = [e for e in events if e.reason == "SystemOOM"]
    assert oom and oom[0].involved_object.kind == "Node" and oom[0].type == "Warning"
    assert oom[0].message.startswith("System OOM encountered, victim process: memory-leak, pid: ")
    assert any(e.reason == "BackOff" and e.involved_object.name == "leaky" for e in events)

    # Restarted: it starts again from its base and grows until it is killed once more.
    restarted = wait_for(lambda: (m := _memory(_pod_metrics(api, "default", "leaky"))) and m < first + 8 * MIB and m,
                         timeout=20, message="the restarted container's metrics")
    assert restarted >= LEAK_BASE_BYTES
    wait_for(lambda: core.read_namespaced_pod("leaky", "default").status.container_statuses[0].restart_count >= 2,
             timeout=20, message="a second OOM kill")


def test_top_follows_log_rate_and_the_node_sums_its_pods(cluster):
    dc, api = cluster
    core = client.CoreV1Api(api)
    for name, rate in (("quiet", "100"), ("loud", "4000")):
        core.create_namespaced_pod("default", _pod(name, "ghcr.io/acme/loggen:1", env={"LOG_RATE": rate}))
    quiet = wait_for(lambda: _pod_metrics(api, "default", "quiet"), timeout=20, message="metrics of quiet")
    loud = wait_for(lambda: _pod_metrics(api, "default", "loud"), timeout=20, message="metrics of loud")
    assert quiet["containers"][0]["usage"]["cpu"] == "7000000n"
    assert loud["containers"][0]["usage"]["cpu"] == "202000000n"
    node = client.CustomObjectsApi(api).get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "devcluster")
    assert int(node["usage"]["cpu"].removesuffix("n")) > 209_000_000  # the node's own use plus both
    core.delete_namespaced_pod("quiet", "default", grace_period_seconds=0)
    core.delete_namespaced_pod("loud", "default", grace_period_seconds=0)


def test_the_program_refuses_a_malformed_restricted_identity():
    result = subprocess.run([sys.executable, "-m", "devcluster", "--kubeconfig", "/dev/null",
                             "--restricted-identity", "read:pods"], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 2
    assert "unknown verb(s) read" in result.stderr
