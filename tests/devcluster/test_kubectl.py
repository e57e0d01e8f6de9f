"""The real kubectl against a devcluster started with --tls: what a platform engineer types must work.

One devcluster for the module, a namespace per test; every test runs with the kubectl on PATH and
with the oldest and newest versioned binaries installed beside it (1.27 still reads OpenAPI v2 as
protobuf, 1.33 reads v3). Every kubectl call has a deadline and fails with its output.
"""
from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.devcluster import start_devcluster_process, stop_process

SDK_BIN = Path("/usr/lib/google-cloud-sdk/bin")
BINARIES = ["kubectl", str(SDK_BIN / "kubectl.1.27"), str(SDK_BIN / "kubectl.1.33")]
CALL_TIMEOUT = 45

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
"""
UNKNOWN_FIELD = DEPLOYMENT.replace("  replicas: 1\n", "  replicas: 1\n  bogus: 1\n")
OTHERS = """\
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 80}]
---
apiVersion: v1
kind: Secret
metadata: {name: creds}
stringData: {password: hunter2}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {a: "1", b: "2"}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: batch/v1
kind: Job
metadata: {name: build}
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers: [{name: build, image: busybox:1.36, command: [sh, -c, "echo built"]}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  rules:
  - host: web.example.test
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"""


@dataclass
class Cluster:
    kubeconfig: Path
    home: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("kubectl-devcluster")
    proc, kubeconfig = start_devcluster_process(workdir, "--tls")
    home = workdir / "home"
    home.mkdir()
    try:
        yield Cluster(kubeconfig, home)
    finally:
        stop_process(proc)


class Kubectl:
    """One kubectl binary pointed at the cluster, in one namespace."""

    def __init__(self, binary: str, cluster: Cluster, namespace: str):
        self.binary, self.cluster, self.namespace = binary, cluster, namespace
        # kubectl keeps its discovery and OpenAPI cache under $HOME/.kube: one per module, never the user's.
        self.env = {**os.environ, "HOME": str(cluster.home), "KUBECONFIG": str(cluster.kubeconfig)}

    def command(self, *args: str) -> list[str]:
        return [self.binary, "--namespace", self.namespace, "--request-timeout=20s", *args]

    def run(self, *args: str, input: str | None = None, ok: bool = True,
            timeout: float = CALL_TIMEOUT) -> subprocess.CompletedProcess[str]:
        try:
            done = subprocess.run(self.command(*args), input=input, capture_output=True, text=True, env=self.env,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"kubectl {' '.join(args)} did not finish in {timeout}s: {exc.stdout!r} "
                                 f"{exc.stderr!r}") from None
        if ok and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done

    def out(self, *args: str, input: str | None = None) -> str:
        return self.run(*args, input=input).stdout


def _binary_id(binary: str) -> str:
    return Path(binary).name


@pytest.fixture(params=BINARIES, ids=_binary_id)
def kubectl(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[Kubectl]:
    binary = shutil.which(request.param)
    if binary is None:
        pytest.fail(f"{request.param} is not installed; CI and development machines have it")
    namespace = f"kc-{secrets.token_hex(3)}"
    tool = Kubectl(binary, cluster, namespace)
    # `apply`, not `create namespace`: kubectl 1.33's typed create sends protobuf, which the devcluster does not read.
    tool.out("apply", "-f", "-", input=f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n")
    try:
        yield tool
    finally:
        tool.run("delete", "namespace", namespace, "--wait=false", ok=False)


def table(text: str) -> tuple[list[str], list[list[str]]]:
    """kubectl's printed table as (headers, rows); columns are separated by two spaces or more."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines, "kubectl printed no table"
    split = [re.split(r"\s{2,}", line.strip()) for line in lines]
    return split[0], split[1:]


def rollout(kubectl: Kubectl, target: str = "deployment/web") -> None:
    kubectl.out("rollout", "status", target, "--timeout=40s")


# --- discovery --------------------------------------------------------------------------------

def test_it_reports_the_server_version(kubectl):
    version = json.loads(kubectl.out("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.31.")


def test_it_lists_the_api_resources(kubectl):
    headers, rows = table(kubectl.out("api-resources"))
    assert headers == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    assert ["deployments", "deploy", "apps/v1", "true", "Deployment"] in rows
    assert ["namespaces", "ns", "v1", "false", "Namespace"] in rows


# --- apply, validation, diff, explain ---------------------------------------------------------

def test_it_applies_client_side_and_then_diff_sees_no_change(kubectl):
    assert kubectl.out("apply", "-f", "-", input=DEPLOYMENT).strip() == "deployment.apps/web created"
    assert kubectl.out("apply", "-f", "-", input=DEPLOYMENT).strip() == "deployment.apps/web unchanged"
    rollout(kubectl)  # see test_it_applies_server_side
    diff = kubectl.run("diff", "-f", "-", input=DEPLOYMENT, ok=False)
    assert (diff.returncode, diff.stdout) == (0, ""), diff.stderr
    changed = kubectl.run("diff", "-f", "-", input=DEPLOYMENT.replace("replicas: 1", "replicas: 3"), ok=False)
    assert changed.returncode == 1 and "+  replicas: 3" in changed.stdout


def test_it_applies_server_side(kubectl):
    assert kubectl.out("apply", "--server-side", "-f", "-", input=DEPLOYMENT).strip() == \
        "deployment.apps/web serverside-applied"
    applied = json.loads(kubectl.out("get", "deployment", "web", "-o", "json", "--show-managed-fields"))
    assert {"manager": "kubectl", "operation": "Apply"}.items() <= applied["metadata"]["managedFields"][0].items()
    # Settled first: diff reads the live object, then asks for the merged one, and a status the
    # rollout writes between the two would show as a change (as on any cluster).
    rollout(kubectl)
    diff = kubectl.run("diff", "--server-side", "-f", "-", input=DEPLOYMENT, ok=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr


def test_it_refuses_an_unknown_field_as_a_real_server_does(kubectl):
    for validate in ([], ["--validate=strict"]):  # strict is kubectl's default
        created = kubectl.run("apply", *validate, "-f", "-", input=UNKNOWN_FIELD, ok=False)
        assert created.returncode == 1
        assert ('error when creating "STDIN": Deployment in version "v1" cannot be handled as a Deployment: '
                'strict decoding error: unknown field "spec.bogus"') in created.stderr
    applied = kubectl.run("apply", "--server-side", "-f", "-", input=UNKNOWN_FIELD, ok=False)
    assert applied.returncode == 1
    assert ".spec.bogus: field not declared in schema" in applied.stderr
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    patched = kubectl.run("apply", "-f", "-", input=UNKNOWN_FIELD, ok=False)
    assert patched.returncode == 1 and 'strict decoding error: unknown field "spec.bogus"' in patched.stderr
    warned = kubectl.run("apply", "--validate=warn", "-f", "-", input=UNKNOWN_FIELD)
    assert 'Warning: unknown field "spec.bogus"' in warned.stderr
    assert "bogus" not in json.loads(kubectl.out("get", "deployment", "web", "-o", "json"))["spec"]


def test_it_explains_a_field(kubectl):
    explained = kubectl.out("explain", "deployment.spec.replicas")
    assert re.search(r"FIELD:\s+replicas <integer>", explained)
    assert "Number of desired pods." in explained


# --- tables -----------------------------------------------------------------------------------

def test_it_prints_the_columns_kube_apiserver_prints(kubectl):
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    kubectl.out("apply", "-f", "-", input=OTHERS)
    rollout(kubectl)
    kubectl.out("wait", "--for=condition=complete", "job/build", "--timeout=40s")
    kubectl.out("wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=40s")

    headers, rows = table(kubectl.out("get", "pods", "-l", "app=web"))
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert [r[1:4] for r in rows] == [["1/1", "Running", "0"]]
    headers, rows = table(kubectl.out("get", "pods", "-l", "app=web", "-o", "wide"))
    assert headers == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                       "READINESS GATES"]
    assert re.fullmatch(r"10\.\d+\.\d+\.\d+", rows[0][5]) and rows[0][7:] == ["<none>", "<none>"]

    headers, rows = table(kubectl.out("get", "deployments", "-o", "wide"))
    assert headers == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert rows[0][:4] == ["web", "1/1", "1", "1"] and rows[0][5:] == ["web", "nginx:1.27", "app=web"]
    headers, rows = table(kubectl.out("get", "replicasets"))
    assert headers == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"] and rows[0][1:4] == ["1", "1", "1"]
    headers, rows = table(kubectl.out("get", "services", "-o", "wide"))
    assert headers == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    assert rows[0][1] == "ClusterIP" and rows[0][3:5] == ["<none>", "80/TCP"] and rows[0][6] == "app=web"
    headers, rows = table(kubectl.out("get", "ingresses"))
    assert headers == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert rows[0][:3] == ["web", "<none>", "web.example.test"]
    headers, rows = table(kubectl.out("get", "secrets"))
    assert headers == ["NAME", "TYPE", "DATA", "AGE"] and ["creds", "Opaque", "1"] == rows[0][:3]
    headers, rows = table(kubectl.out("get", "configmaps", "settings"))
    assert headers == ["NAME", "DATA", "AGE"] and rows[0][:2] == ["settings", "2"]
    headers, rows = table(kubectl.out("get", "pvc"))
    assert headers == ["NAME", "STATUS", "VOLUME", "CAPACITY", "ACCESS MODES", "STORAGECLASS",
                       "VOLUMEATTRIBUTESCLASS", "AGE"]
    assert rows[0][1] == "Bound" and rows[0][3:6] == ["1Gi", "RWO", "standard"]
    headers, rows = table(kubectl.out("get", "jobs"))
    assert headers == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert rows[0][:3] == ["build", "Complete", "1/1"]
    headers, rows = table(kubectl.out("get", "namespaces", kubectl.namespace))
    assert headers == ["NAME", "STATUS", "AGE"] and rows[0][:2] == [kubectl.namespace, "Active"]
    headers, rows = table(kubectl.out("get", "events", "--field-selector", "involvedObject.kind=Deployment"))
    assert headers == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert ["Normal", "ScalingReplicaSet", "deployment/web"] in [r[1:4] for r in rows]


def test_it_streams_table_rows_with_get_watch(kubectl):
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    rollout(kubectl)
    proc = subprocess.Popen(kubectl.command("get", "pods", "-w"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=kubectl.env)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()

    def next_line() -> str:
        try:
            return lines.get(timeout=20)
        except queue.Empty:
            raise AssertionError(f"kubectl get -w printed nothing for 20s: {proc.stderr}") from None

    try:
        assert re.split(r"\s{2,}", next_line().strip()) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
        first = re.split(r"\s{2,}", next_line().strip())
        assert first[1:3] == ["1/1", "Running"]
        kubectl.out("scale", "deployment/web", "--replicas=2")
        seen: list[list[str]] = []
        while not any(row[0] != first[0] and row[2] == "Running" for row in seen):
            seen.append(re.split(r"\s{2,}", next_line().strip()))
        assert all(len(row) == 5 for row in seen), seen
    finally:
        proc.kill()
        proc.wait(10)


# --- day-to-day commands ----------------------------------------------------------------------

def test_it_describes_and_reads_logs(kubectl):
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    rollout(kubectl)
    described = kubectl.out("describe", "deployment", "web")
    assert re.search(r"Replicas:\s+1 desired \| 1 updated \| 1 total \| 1 available", described)
    assert "ScalingReplicaSet" in described
    kubectl.out("apply", "-f", "-", input=OTHERS)
    kubectl.out("wait", "--for=condition=complete", "job/build", "--timeout=40s")
    # The devcluster writes what a build job prints; --tail keeps the last line of it.
    logs = kubectl.out("logs", "job/build").splitlines()
    assert len(logs) > 1 and kubectl.out("logs", "job/build", "--tail=1").splitlines() == logs[-1:]


# kubectl before 1.30 runs exec over SPDY, which the devcluster does not serve (it speaks the
# WebSocket protocol kubectl uses since 1.30); exec is driven with the binaries that use it.
@pytest.mark.parametrize("kubectl", [b for b in BINARIES if not b.endswith("kubectl.1.27")], indirect=True,
                         ids=_binary_id)
def test_it_execs_in_a_pod(kubectl):
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    rollout(kubectl)
    assert kubectl.out("exec", "deployment/web", "--", "sh", "-c", "echo hello from $0").strip() == "hello from sh"
    failed = kubectl.run("exec", "deployment/web", "--", "sh", "-c", "exit 3", ok=False)
    assert failed.returncode == 3


def test_it_scales_rolls_out_and_undoes(kubectl):
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    rollout(kubectl)
    kubectl.out("scale", "deployment/web", "--replicas=2")
    rollout(kubectl)
    assert table(kubectl.out("get", "deployment", "web"))[1][0][1] == "2/2"
    kubectl.out("set", "image", "deployment/web", "web=nginx:1.28")
    rollout(kubectl)
    kubectl.out("rollout", "undo", "deployment/web")
    rollout(kubectl)
    images = kubectl.out("get", "deployment", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}")
    assert images == "nginx:1.27"
    assert "REVISION" in kubectl.out("rollout", "history", "deployment/web")


def test_it_deletes_a_namespace_and_waits_for_it(kubectl):
    kubectl.out("apply", "-f", "-", input=DEPLOYMENT)
    rollout(kubectl)
    assert kubectl.out("delete", "namespace", kubectl.namespace, "--wait", "--timeout=40s").strip() == \
        f'namespace "{kubectl.namespace}" deleted'
    gone = kubectl.run("get", "namespace", kubectl.namespace, ok=False)
    assert gone.returncode == 1 and f'namespaces "{kubectl.namespace}" not found' in gone.stderr


@pytest.mark.parametrize("kubectl", [str(SDK_BIN / "kubectl.1.33")], indirect=True, ids=_binary_id)
def test_it_names_the_body_formats_it_reads_when_kubectl_sends_protobuf(kubectl):
    # kubectl 1.33's typed `create` commands send protobuf bodies; the devcluster reads JSON and YAML only.
    refused = kubectl.run("create", "configmap", "settings", "--from-literal=a=1", ok=False)
    assert refused.returncode == 1
    assert ("the body of the request was in an unknown format - accepted media types include: application/json, "
            "application/yaml") in refused.stderr
    assert kubectl.out("apply", "-f", "-", input="apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\n"
                       "data: {a: '1'}\n").strip() == "configmap/settings created"
