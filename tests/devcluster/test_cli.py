"""The devcluster program: port 0, the kubeconfig it writes, its token, and --data persistence."""
from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request

import yaml
from kubernetes import client, config

from tests.fixtures.devcluster import start_devcluster_process, stop_process


def _server_and_token(kubeconfig) -> tuple[str, str]:
    cfg = yaml.safe_load(kubeconfig.read_text())
    return cfg["clusters"][0]["cluster"]["server"], cfg["users"][0]["user"]["token"]


def test_it_listens_on_a_free_port_and_writes_a_kubeconfig(tmp_path):
    proc, kubeconfig = start_devcluster_process(tmp_path)
    try:
        cfg = yaml.safe_load(kubeconfig.read_text())
        assert cfg["current-context"] == "devcluster"
        assert cfg["contexts"][0]["context"] == {"cluster": "devcluster", "user": "devcluster", "namespace": "default"}
        server, token = _server_and_token(kubeconfig)
        assert server.startswith("http://127.0.0.1:") and not server.endswith(":0")
        assert (tmp_path / "devcluster.out").read_text().strip() == f"devcluster listening on {server}"
        api = config.new_client_from_config(config_file=str(kubeconfig))
        assert client.VersionApi(api).get_code().major == "1"
        names = [ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items]
        assert "default" in names
        api.close()
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_it_requires_the_bearer_token(tmp_path):
    proc, kubeconfig = start_devcluster_process(tmp_path)
    try:
        server, token = _server_and_token(kubeconfig)
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            request = urllib.request.Request(f"{server}/api/v1/namespaces", headers=headers)
            try:
                urllib.request.urlopen(request, timeout=5)
                raise AssertionError("expected 401")
            except urllib.error.HTTPError as exc:
                assert exc.code == 401
                body = json.loads(exc.read())
                assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
        ok = urllib.request.urlopen(urllib.request.Request(f"{server}/api/v1/namespaces",
                                                           headers={"Authorization": f"Bearer {token}"}), timeout=5)
        assert json.loads(ok.read())["kind"] == "NamespaceList"
    finally:
        stop_process(proc)


def test_it_keeps_state_and_token_across_restarts_with_data(tmp_path):
    data = tmp_path / "data"
    first_dir, second_dir = tmp_path / "one", tmp_path / "two"
    first_dir.mkdir()
    second_dir.mkdir()
    proc, kubeconfig = start_devcluster_process(first_dir, "--data", str(data))
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "kept"}})
        made = core.create_namespaced_config_map("kept", {"metadata": {"name": "cfg"}, "data": {"a": "1", "b": "Zürich ✓"}})
        api.close()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
    _, token = _server_and_token(kubeconfig)
    proc, kubeconfig2 = start_devcluster_process(second_dir, "--data", str(data))
    try:
        assert _server_and_token(kubeconfig2)[1] == token
        api = config.new_client_from_config(config_file=str(kubeconfig2))
        core = client.CoreV1Api(api)
        kept = core.read_namespaced_config_map("cfg", "kept")
        assert kept.data == {"a": "1", "b": "Zürich ✓"} and kept.metadata.uid == made.metadata.uid
        later = core.create_namespaced_config_map("kept", {"metadata": {"name": "later"}})
        assert int(later.metadata.resource_version) > int(made.metadata.resource_version)
        api.close()
    finally:
        stop_process(proc)


def test_it_serves_https_with_a_certificate_the_kubeconfig_trusts(tmp_path):
    proc, kubeconfig = start_devcluster_process(tmp_path, "--tls")
    try:
        server, _ = _server_and_token(kubeconfig)
        assert server.startswith("https://127.0.0.1:")
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["certificate-authority-data"]
        api = config.new_client_from_config(config_file=str(kubeconfig))
        assert "default" in [ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items]
        api.close()
    finally:
        stop_process(proc)
