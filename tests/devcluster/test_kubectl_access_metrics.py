"""The real kubectl against `python -m devcluster --tls`: `auth can-i` allowed and denied, a refused
call's message, `top pods` and `top nodes`; with more than one kubectl release."""
from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from devcluster import RESTRICTED_CONTEXT
from tests.contract.support import wait_for
from tests.fixtures.devcluster import start_devcluster_process, stop_process

KUBECTL_DIR = Path("/usr/lib/google-cloud-sdk/bin")
KUBECTLS = [KUBECTL_DIR / "kubectl.1.27", KUBECTL_DIR / "kubectl.1.33"]
COMMAND_TIMEOUT = 30

# The restricted user may read pods and their logs, nothing else (beyond reviewing its own access).
RESTRICTED = "get,list,watch:pods,pods/log"


@pytest.fixture(scope="module")
def devcluster_tls(tmp_path_factory) -> Iterator[Path]:
    proc, kubeconfig = start_devcluster_process(tmp_path_factory.mktemp("kubectl-am"), "--tls",
                                                "--restricted-identity", RESTRICTED)
    try:
        yield kubeconfig
    finally:
        stop_process(proc)


@pytest.fixture(scope="module")
def workloads(devcluster_tls: Path) -> str:
    """A namespace with a busy log generator and an idle web server, both with metrics."""
    api = config.new_client_from_config(config_file=str(devcluster_tls))
    core = client.CoreV1Api(api)
    ns = "shop"
    core.create_namespace({"metadata": {"name": ns}})
    for name, image, env in (("loggen", "ghcr.io/acme/loggen:1", [{"name": "LOG_RATE", "value": "3000"}]),
                             ("web", "nginx:1.27", [])):
        core.create_namespaced_pod(ns, {"metadata": {"name": name}, "spec": {"containers": [
            {"name": "app", "image": image, "env": env}]}})
    metrics = client.CustomObjectsApi(api)
    wait_for(lambda: len(metrics.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", ns, "pods")["items"]) == 2,
             timeout=30, message="metrics of both pods")
    api.close()
    return ns


@pytest.fixture(params=KUBECTLS, ids=lambda path: path.name)
def kubectl(request, devcluster_tls: Path, tmp_path: Path):
    binary: Path = request.param
    assert binary.exists(), f"{binary} is not installed"

    def run(*args: str, context: str | None = None) -> subprocess.CompletedProcess[str]:
        command = [str(binary), "--kubeconfig", str(devcluster_tls), "--cache-dir", str(tmp_path / "cache"),
                   "--request-timeout", "20s", *(["--context", context] if context else []), *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"{' '.join(command)} did not finish in {COMMAND_TIMEOUT}s: {exc.stderr!r}") from None

    return run


def test_auth_can_i_answers_yes_for_the_admin(kubectl):
    for args in (("create", "deployments.apps"), ("delete", "namespaces"), ("get", "pods", "--subresource=log")):
        result = kubectl("auth", "can-i", *args)
        assert (result.returncode, result.stdout.strip()) == (0, "yes"), (args, result.stderr)


def test_auth_can_i_answers_for_the_restricted_identity(kubectl):
    allowed = kubectl("auth", "can-i", "list", "pods", "-n", "shop", context=RESTRICTED_CONTEXT)
    assert (allowed.returncode, allowed.stdout.strip()) == (0, "yes"), allowed.stderr
    for args in (("create", "deployments.apps"), ("delete", "pods"), ("list", "namespaces"),
                 ("create", "pods", "--subresource=exec")):
        denied = kubectl("auth", "can-i", *args, context=RESTRICTED_CONTEXT)
        assert (denied.returncode, denied.stdout.strip()) == (1, "no"), (args, denied.stderr)


def test_auth_can_i_lists_what_the_restricted_identity_may_do(kubectl):
    result = kubectl("auth", "can-i", "--list", "-n", "shop", context=RESTRICTED_CONTEXT)
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line for line in result.stdout.splitlines()[1:] if line and not line.startswith(" ")}
    assert "[get list watch]" in rows["pods"] and "[get list watch]" in rows["pods/log"]
    assert "[create]" in rows["selfsubjectaccessreviews.authorization.k8s.io"]
    assert not any(name.startswith("deployments") for name in rows)


def test_a_refused_call_prints_the_apiservers_message(kubectl, workloads):
    result = kubectl("get", "deployments", "-n", workloads, context=RESTRICTED_CONTEXT)
    assert result.returncode == 1
    assert ('Error from server (Forbidden): deployments.apps is forbidden: User "restricted" cannot list resource '
            f'"deployments" in API group "apps" in the namespace "{workloads}"') in result.stderr
    result = kubectl("delete", "pod", "web", "-n", workloads, context=RESTRICTED_CONTEXT)
    assert ('Error from server (Forbidden): pods "web" is forbidden: User "restricted" cannot delete resource "pods" '
            f'in API group "" in the namespace "{workloads}"') in result.stderr
    result = kubectl("get", "namespaces", context=RESTRICTED_CONTEXT)
    assert ('namespaces is forbidden: User "restricted" cannot list resource "namespaces" in API group "" at the '
            "cluster scope") in result.stderr
    # What it may do, it does.
    allowed = kubectl("get", "pods", "-n", workloads, "-o", "name", context=RESTRICTED_CONTEXT)
    assert allowed.returncode == 0 and "pod/web" in allowed.stdout, allowed.stderr


def test_top_pods_shows_the_usage_each_pod_has(kubectl, workloads):
    result = kubectl("top", "pods", "-n", workloads)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    assert header.split() == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    rows = {line.split()[0]: line.split()[1:] for line in lines}
    assert set(rows) == {"loggen", "web"}
    # LOG_RATE=3000: 2m of floor and 50 µcores per line a second.
    assert rows["loggen"][0] == "152m"
    cpu, memory = rows["web"]
    assert cpu in ("1m", "2m") and re.fullmatch(r"[34]Mi", memory), rows["web"]
    containers = kubectl("top", "pods", "-n", workloads, "--containers", "web")
    assert containers.returncode == 0 and "app" in containers.stdout, containers.stderr


def test_top_nodes_shows_the_node_with_its_share_of_capacity(kubectl, workloads):
    result = kubectl("top", "nodes")
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    # Newer releases print CPU(%) and MEMORY(%).
    assert [h.replace("(%)", "%") for h in header.split()] == ["NAME", "CPU(cores)", "CPU%", "MEMORY(bytes)", "MEMORY%"]
    (row,) = [line.split() for line in lines]
    assert row[0] == "devcluster"
    assert re.fullmatch(r"\d+m", row[1]) and int(row[1][:-1]) > 152  # the node's own use and the pods'
    assert re.fullmatch(r"\d+%", row[2]) and re.fullmatch(r"\d+Mi", row[3]) and re.fullmatch(r"\d+%", row[4])


def test_top_is_refused_to_the_restricted_identity(kubectl, workloads):
    result = kubectl("top", "pods", "-n", workloads, context=RESTRICTED_CONTEXT)
    assert result.returncode == 1
    assert ('pods.metrics.k8s.io is forbidden: User "restricted" cannot list resource "pods" in API group '
            f'"metrics.k8s.io" in the namespace "{workloads}"') in result.stderr
