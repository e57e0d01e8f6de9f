"""`KubeClient.open_log_stream_async`: a pod log read on an event loop, over plain HTTP and TLS,
with the same answers to failures as the threaded reader."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import pytest
import yaml

from clusters.client import KubeClient
from clusters.errors import ClusterError
from tests.clusters.helpers import api_port, connections_to, make_deployment, wait_for_running_pod
from tests.fixtures.devcluster import start_devcluster_process, stop_process


def running_generator(kube: KubeClient, namespace: str, rate: str = "50") -> str:
    kube.apply(
        [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            make_deployment(namespace, "gen", image="ghcr.io/ale-demo/loggen:1", env={"LOG_RATE": rate}),
        ]
    )
    return wait_for_running_pod(kube, namespace, "gen")["metadata"]["name"]


async def read_lines(kube: KubeClient, namespace: str, pod: str, count: int, **options) -> list[str]:
    seen = b""
    async with await kube.open_log_stream_async(namespace, pod, **options) as stream:
        while seen.count(b"\n") < count:
            chunk = await asyncio.wait_for(stream.read_some(), 10)
            if not chunk:
                break
            seen += chunk
    return seen.decode().splitlines()


@pytest.fixture
def kube(kubeconfig_path) -> KubeClient:
    return KubeClient.from_kubeconfig(Path(kubeconfig_path).read_text(), name="local")


@pytest.fixture
def generator(kube):
    namespace = f"ale-alogs-{time.monotonic_ns() % 10**9}"
    pod = running_generator(kube, namespace)
    yield namespace, pod
    kube.delete_namespace(namespace)


def test_it_follows_a_log_with_timestamps_on_the_loop(kube, generator):
    namespace, pod = generator
    lines = asyncio.run(read_lines(kube, namespace, pod, 5, tail_lines=1, timestamps=True))
    assert len(lines) >= 5 and all(line[:4].isdigit() and "loggen seq=" in line for line in lines)
    numbers = [int(line.split("seq=")[1].split()[0]) for line in lines]
    assert numbers == sorted(numbers) and numbers[-1] > numbers[0]


def test_a_log_that_is_not_followed_ends(kube, generator):
    namespace, pod = generator
    time.sleep(0.3)
    lines = asyncio.run(read_lines(kube, namespace, pod, 1000, follow=False, tail_lines=3))
    assert len(lines) == 3 and all("loggen seq=" in line for line in lines)


def test_closing_ends_a_waiting_read_and_frees_the_connection(kube):
    namespace = f"ale-alogs-{time.monotonic_ns() % 10**9}"
    pod = running_generator(kube, namespace, rate="1/60")  # one line a minute: the read waits
    port = api_port(kube)

    async def scenario() -> tuple[bytes, float, set, set]:
        before = connections_to(port)
        stream = await kube.open_log_stream_async(namespace, pod, tail_lines=0)
        reading = asyncio.create_task(stream.read_some())
        await asyncio.sleep(0.3)
        assert not reading.done()
        opened = connections_to(port) - before
        closed_at = time.monotonic()
        await stream.close()
        reading.cancel()
        result = await asyncio.gather(reading, return_exceptions=True)
        await stream.close()  # idempotent
        assert await stream.read_some() == b""
        await asyncio.sleep(0.1)
        return result, time.monotonic() - closed_at, opened, opened & connections_to(port)

    try:
        _, took, opened, left = asyncio.run(scenario())
        assert len(opened) == 1 and not left and took < 1
    finally:
        kube.delete_namespace(namespace)


def test_a_missing_pod_is_not_found_and_not_retried(kube):
    with pytest.raises(ClusterError) as caught:
        asyncio.run(kube.open_log_stream_async("default", "no-such-pod", follow=False))
    assert caught.value.status == 404 and not caught.value.retryable
    assert "no-such-pod" in caught.value.user_message


def test_wrong_credentials_are_refused_with_a_message(kubeconfig_path):
    data = yaml.safe_load(Path(kubeconfig_path).read_text())
    data["users"][0]["user"]["token"] = "not-the-token"
    kube = KubeClient.from_kubeconfig(data, name="local")
    with pytest.raises(ClusterError) as caught:
        asyncio.run(kube.open_log_stream_async("default", "any", follow=False))
    assert caught.value.status == 401 and not caught.value.retryable
    assert "credentials" in caught.value.user_message


def test_an_unreachable_cluster_is_retryable(kubeconfig_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    data = yaml.safe_load(Path(kubeconfig_path).read_text())
    data["clusters"][0]["cluster"]["server"] = f"http://127.0.0.1:{port}"
    kube = KubeClient.from_kubeconfig(data, name="local")
    with pytest.raises(ClusterError) as caught:
        asyncio.run(kube.open_log_stream_async("default", "any"))
    assert caught.value.retryable and caught.value.reason == "Unreachable"
    assert caught.value.user_message == "The cluster 'local' cannot be reached."


def test_it_reads_over_tls_trusting_the_kubeconfigs_authority(tmp_path):
    proc, kubeconfig = start_devcluster_process(tmp_path, "--tls")
    try:
        kube = KubeClient.from_kubeconfig(kubeconfig.read_text(), name="tls")
        assert kube.configuration.host.startswith("https://")
        pod = running_generator(kube, "tls-logs")
        lines = asyncio.run(read_lines(kube, "tls-logs", pod, 3, tail_lines=1))
        assert len(lines) >= 3 and all("loggen seq=" in line for line in lines)

        # Without the authority in the kubeconfig the certificate is not trusted.
        data = yaml.safe_load(kubeconfig.read_text())
        del data["clusters"][0]["cluster"]["certificate-authority-data"]
        untrusting = KubeClient.from_kubeconfig(data, name="tls")
        with pytest.raises(ClusterError) as caught:
            asyncio.run(untrusting.open_log_stream_async("tls-logs", pod, follow=False))
        assert caught.value.retryable and caught.value.reason == "Unreachable"
    finally:
        stop_process(proc)


PLUGIN = """
import json, pathlib, sys, time
calls = pathlib.Path(sys.argv[1])
calls.write_text(calls.read_text() + "run\\n" if calls.exists() else "run\\n")
time.sleep(0.5)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
                  "status": {"token": sys.argv[2], "expirationTimestamp": "2000-01-01T00:00:00Z"}}))
"""


def test_a_slow_credential_plugin_renews_the_token_without_stalling_the_loop(kubeconfig_path, generator, tmp_path):
    namespace, pod = generator
    (tmp_path / "plugin.py").write_text(PLUGIN)
    calls = tmp_path / "calls"
    data = yaml.safe_load(Path(kubeconfig_path).read_text())
    user = data["users"][0]["user"]
    token = user.pop("token")
    # A plugin whose token has always expired: each request runs it again, as a real one does
    # once an hour. It takes half a second, as a cloud provider's login helper can.
    user["exec"] = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": [str(tmp_path / "plugin.py"), str(calls), token],
    }
    kube = KubeClient.from_kubeconfig(data, name="local")
    runs_at_load = calls.read_text().count("run")

    async def scenario() -> tuple[list[str], int]:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        ticker = asyncio.create_task(tick())
        try:
            lines = await read_lines(kube, namespace, pod, 2, tail_lines=1)
        finally:
            ticker.cancel()
        return lines, ticks

    lines, ticks = asyncio.run(scenario())
    assert len(lines) >= 2 and all("loggen seq=" in line for line in lines)
    # The plugin ran again for this log, and the loop went on meanwhile: a loop blocked for the
    # half second would have ticked once at most.
    assert calls.read_text().count("run") > runs_at_load
    assert ticks >= 10
