"""The emulated ingress controller: real HTTP requests to the devcluster's ingress port."""
from __future__ import annotations

import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from devcluster import DevCluster
from devcluster.ingress import find_backend
from tests.fixtures.devcluster import REPO_ROOT, stop_process
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DevCluster, client.ApiClient]]:
    dc = DevCluster(pod_ready_seconds=0.2, ingress_port=0)
    dc.start()
    api = config.new_client_from_config(config_file=str(dc.write_kubeconfig(tmp_path_factory.mktemp("ing") / "kc")))
    try:
        yield dc, api
    finally:
        api.close()
        dc.stop()


@pytest.fixture
def ns(cluster) -> Iterator[str]:
    _, api = cluster
    name = f"ing-{secrets.token_hex(3)}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


def get(dc: DevCluster, host: str, path: str = "/") -> tuple[int, str, str]:
    """(status, content type, body) of a request to the ingress port with `host` as Host."""
    request = urllib.request.Request(dc.ingress_url + path, headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def run_web(api: client.ApiClient, ns: str, name: str, image: str, host: str, *, replicas: int = 1, env=None) -> None:
    labels = {"app": name}
    container = {"name": "app", "image": image, "ports": [{"containerPort": 8080}], "env": env or []}
    client.AppsV1Api(api).create_namespaced_deployment(ns, {
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}},
    })
    client.CoreV1Api(api).create_namespaced_service(ns, {
        "metadata": {"name": name}, "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]},
    })
    backend = {"service": {"name": name, "port": {"number": 80}}}
    client.NetworkingV1Api(api).create_namespaced_ingress(ns, {
        "metadata": {"name": name},
        "spec": {"rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}]},
    })


def test_it_serves_the_welcome_page_of_a_web_image_by_host(cluster, ns):
    dc, api = cluster
    host = f"web-{ns}.localhost"
    run_web(api, ns, "web", "nginx:1.27", host)
    status, kind, body = wait_for(lambda: (r := get(dc, host, "/index.html"))[0] == 200 and r, what="a ready pod")
    assert kind.startswith("text/html") and "Welcome to nginx!" in body
    # The port in the Host header (as a browser sends it) changes nothing.
    assert get(dc, f"{host}:{dc.ingress_url.rsplit(':', 1)[1]}")[0] == 200


def test_it_serves_the_recent_output_of_a_log_generator(cluster, ns):
    dc, api = cluster
    host = f"gen-{ns}.localhost"
    run_web(api, ns, "gen", "loggen:1", host, env=[{"name": "LOG_RATE", "value": "20"}])
    status, kind, body = wait_for(lambda: (r := get(dc, host))[0] == 200 and "loggen seq=" in r[2] and r, what="output")
    assert kind.startswith("text/plain")
    assert body.splitlines()[-1].startswith("loggen seq=")


def test_it_answers_503_with_a_clear_page_while_no_pod_is_ready(cluster, ns):
    dc, api = cluster
    host = f"idle-{ns}.localhost"
    run_web(api, ns, "idle", "nginx:1.27", host, replicas=0)
    status, kind, body = get(dc, host)
    assert status == 503 and kind.startswith("text/html")
    assert "No pod of <strong>idle</strong> is ready" in body


def test_it_answers_404_for_a_host_no_ingress_serves(cluster):
    dc, _ = cluster
    status, _, body = get(dc, "nobody-here.localhost")
    assert status == 404 and "No Ingress of this cluster serves <code>nobody-here.localhost</code>" in body


def test_the_longest_path_and_an_exact_host_win():
    def ingress(host: str, path: str, service: str) -> dict:
        backend = {"service": {"name": service, "port": {"number": 80}}}
        rule = {"host": host, "http": {"paths": [{"path": path, "pathType": "Prefix", "backend": backend}]}}
        return {"metadata": {"namespace": "n", "name": service}, "spec": {"rules": [rule]}}

    ingresses = [ingress("*.example.com", "/", "wild"), ingress("a.example.com", "/", "root"),
                 ingress("a.example.com", "/api", "api")]
    assert find_backend(ingresses, "a.example.com", "/api/x") == ("n", "api")
    assert find_backend(ingresses, "a.example.com", "/apix") == ("n", "root")
    assert find_backend(ingresses, "b.example.com", "/") == ("n", "wild")
    assert find_backend(ingresses, "c.b.example.com", "/") is None


def test_the_cli_writes_the_ingress_port_it_picked(tmp_path: Path):
    port_file = tmp_path / "ingress-port"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devcluster", "--port", "0", "--kubeconfig", str(tmp_path / "kc"),
         "--ingress-port", "0", "--ingress-port-file", str(port_file), "--log-level", "WARNING"],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "kc").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the devcluster did not start"
            time.sleep(0.05)
        port = int(port_file.read_text())
        request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": "unknown.localhost"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=5)
        assert answer.value.code == 404
    finally:
        stop_process(proc)
