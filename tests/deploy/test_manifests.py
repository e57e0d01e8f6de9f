"""deploy/kubernetes: every manifest and both renderings validate against the Kubernetes 1.31
schemas offline (kubernetes-validate, strict: unknown fields are errors), and the pieces fit."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from ale_site.entrypoint import ROLES
from tests.deploy.kustomize import load_documents, render

BASE_DIR = Path(__file__).resolve().parents[2]
DEPLOY = BASE_DIR / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.31.0"
KUSTOMIZATIONS = [DEPLOY / "base", DEPLOY / "overlays" / "example"]
MANIFEST_FILES = sorted(p for p in DEPLOY.rglob("*.yaml") if p.name != "kustomization.yaml")


def key(resource: dict) -> tuple[str, str, str]:
    meta = resource["metadata"]
    return resource["kind"], meta.get("namespace", ""), meta["name"]


def by_key(resources: list[dict]) -> dict[tuple[str, str, str], dict]:
    keyed = {key(r): r for r in resources}
    assert len(keyed) == len(resources), "two resources with one kind, namespace and name"
    return keyed


@pytest.fixture(scope="module")
def overlay() -> dict[tuple[str, str, str], dict]:
    return by_key(render(DEPLOY / "overlays" / "example"))


def validate(resource: dict) -> None:
    kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("path", MANIFEST_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_it_validates_every_manifest_file(path):
    documents = load_documents(path)
    assert documents
    for document in documents:
        validate(document)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_it_validates_the_kustomize_output(directory):
    resources = render(directory)
    assert resources
    for resource in resources:
        validate(resource)


def test_it_fails_validation_on_a_wrong_field():
    # The check itself: a misspelt field is an error, not something silently ignored.
    deployment = yaml.safe_load((DEPLOY / "base" / "beat.yaml").read_text())
    deployment["spec"]["replica"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


# A cross-check of the Python renderer, which the tests above validate on every machine, against
# kubectl's own kustomize where a kubectl is installed (none is, on the machines CI runs on).
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="no kubectl here to compare the Python kustomize renderer with")
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_it_renders_as_kubectl_kustomize_does(directory):
    output = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, check=True).stdout
    theirs = by_key([doc for doc in yaml.safe_load_all(output) if doc])
    assert by_key(render(directory)) == theirs


def test_it_runs_two_web_pods_probed_on_health_endpoints(overlay):
    web = overlay["Deployment", "ale", "ale-web"]
    assert web["spec"]["replicas"] >= 2
    (container,) = web["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["web"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    port = container["ports"][0]
    assert port["containerPort"] == 8000 and container["readinessProbe"]["httpGet"]["port"] == port["name"]
    service = overlay["Service", "ale", "ale-web"]
    assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    ingress = overlay["Ingress", "ale", "ale"]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == "ale-web" and backend["port"]["name"] == service["spec"]["ports"][0]["name"]


def test_it_runs_exactly_one_beat_and_leader_elected_watchers(overlay):
    beat = overlay["Deployment", "ale", "ale-beat"]
    assert beat["spec"]["replicas"] == 1
    # Recreate: a rollout stops the old scheduler before starting the new one.
    assert beat["spec"]["strategy"]["type"] == "Recreate"
    watcher = overlay["Deployment", "ale", "ale-watcher"]
    assert watcher["spec"]["replicas"] >= 2
    env = {e["name"]: e for e in watcher["spec"]["template"]["spec"]["containers"][0]["env"]}
    # POD_NAMESPACE turns --leader-elect on and places the Lease; POD_NAME is the identity.
    assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_it_gives_every_pod_a_role_an_image_and_a_locked_down_context(overlay):
    dockerfile = (BASE_DIR / "Dockerfile").read_text()
    uid = int(re.findall(r"^USER\s+(\d+)", dockerfile, re.M)[-1].split(":")[0])
    roles = set()
    for (kind, _, name), resource in overlay.items():
        if kind not in ("Deployment", "Job"):
            continue
        pod = resource["spec"]["template"]
        if kind == "Deployment":
            assert resource["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(), name
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] == uid
        for container in spec["containers"]:
            (role,) = container["args"]
            assert role in ROLES
            roles.add(role)
            assert container["image"] == "ghcr.io/ale-paas/ale:1.0.0"
            assert container["securityContext"]["readOnlyRootFilesystem"]
            assert {"mountPath": "/tmp", "name": "tmp"} in container["volumeMounts"]
    assert roles == {"web", "worker", "beat", "watcher", "migrate"}
    job = overlay["Job", "ale", "ale-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]


def test_it_references_only_what_it_ships(overlay):
    names = {(kind, name) for kind, _, name in overlay}
    for (kind, _, name), resource in overlay.items():
        if kind not in ("Deployment", "Job"):
            continue
        spec = resource["spec"]["template"]["spec"]
        assert ("ServiceAccount", spec["serviceAccountName"]) in names
        for container in spec["containers"]:
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    assert ("ConfigMap", source["configMapRef"]["name"]) in names
                if "secretRef" in source:
                    assert ("Secret", source["secretRef"]["name"]) in names
    for kind in ("ClusterRoleBinding", "RoleBinding"):
        for (k, _, name), binding in overlay.items():
            if k == kind:
                assert (binding["roleRef"]["kind"], binding["roleRef"]["name"]) in names
                assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "ale", "namespace": "ale"}]


def test_it_sets_only_settings_ale_reads(overlay):
    read = (BASE_DIR / "ale_site" / "settings.py").read_text() + (BASE_DIR / "ale_site" / "entrypoint.py").read_text()
    variables = set(overlay["ConfigMap", "ale", "ale-config"]["data"]) | set(overlay["Secret", "ale", "ale-secrets"]["stringData"])
    for variable in variables:
        assert f'"{variable}"' in read, f"{variable} is read by nothing"
    assert {"SECRET_KEY", "ALE_SECRET_KEYS", "DATABASE_URL", "REDIS_URL"} <= set(overlay["Secret", "ale", "ale-secrets"]["stringData"])


def test_it_budgets_disruptions_for_the_replicated_pods(overlay):
    budgets = {name: pdb for (kind, _, name), pdb in overlay.items() if kind == "PodDisruptionBudget"}
    assert set(budgets) == {"ale-web", "ale-worker", "ale-watcher"}
    for name, budget in budgets.items():
        deployment = overlay["Deployment", "ale", name]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
        # A budget must leave a drain possible: never all replicas required.
        if "minAvailable" in budget["spec"]:
            assert budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]
        else:
            assert budget["spec"]["maxUnavailable"] >= 1
