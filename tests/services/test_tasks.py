"""The reconcile task against the devcluster: what it creates, how it retries, when it fails."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from ale_site.localstack import free_port
from clusters.client import client_for
from clusters.models import Cluster
from devcluster import kubeconfig_text
from environments.tasks import reconcile_environment
from services import actions
from services.forms import ServiceForm
from services.models import Service
from services.lifecycle import mark_failed
from services.tasks import MAX_RETRIES, RETRY_MAX_SECONDS, reconcile_service, retry_delay
from spaces.actions import create_project
from tests.waiting import wait_for


pytestmark = pytest.mark.django_db


def make_env(cluster, space, owner, name: str = "shop"):
    project = create_project(acting_user=owner, space=space, name=name, display_name="", cluster=cluster)
    return project.environments.get()


@pytest.fixture
def env(kube_cluster, space, owner):
    return make_env(kube_cluster, space, owner)


@pytest.fixture
def kube(kube_cluster):
    return client_for(kube_cluster)


@pytest.fixture
def fault_env(fault_cluster, space, owner):
    """An environment on the embedded devcluster, where the test injects faults."""
    return make_env(fault_cluster, space, owner, name="faulty")


def deploy(env, owner, service: Service | None = None, **overrides: Any) -> Service:
    data = {
        "name": "web",
        "kind": "web",
        "source": "image",
        "image": "nginx:1.27",
        "port": "80",
        "cpu": "0.1",
        "memory": "64Mi",
        "replicas": "2",
        "health_check_path": "/",
        "capacity": "on_demand",
        **overrides,
    }
    form = ServiceForm(data, environment=env, service=service)
    assert form.is_valid(), form.errors
    return actions.deploy_service(owner, env, form.cleaned_data, service)


def reconcile(service: Service) -> str:
    return reconcile_service.apply(args=[service.pk, service.generation]).get()


def ready_pods(kube, service: Service) -> int:
    deployment = kube.get("apps/v1", "Deployment", service.name, service.namespace) or {}
    return (deployment.get("status") or {}).get("readyReplicas") or 0


def pods_of(kube, service: Service) -> list[dict]:
    pods, _ = kube.list("v1", "Pod", namespace=service.namespace, label_selector=f"ale.dev/service={service.public_id}")
    return [pod for pod in pods if not pod["metadata"].get("deletionTimestamp")]


def test_it_deploys_a_web_service_until_its_pods_are_ready(env, owner, kube):
    service = deploy(env, owner)
    assert reconcile(service) == "applied"
    namespace = kube.get("v1", "Namespace", env.namespace)
    assert namespace["metadata"]["labels"]["ale.dev/environment"] == env.public_id
    assert kube.get("networking.k8s.io/v1", "NetworkPolicy", "ale-isolation", env.namespace) is not None
    assert kube.get("v1", "Service", "web", env.namespace)["spec"]["ports"][0]["port"] == 80
    ingress = kube.get("networking.k8s.io/v1", "Ingress", "web", env.namespace)
    assert ingress["spec"]["rules"][0]["host"] == f"web-{env.public_id}.localtest.me"
    wait_for(lambda: ready_pods(kube, service) == 2, what="two ready pods")
    deployment = kube.get("apps/v1", "Deployment", "web", env.namespace)
    assert deployment["metadata"]["annotations"]["ale.dev/generation"] == "1"
    # The task sets deploying and failed only; running is the watcher's word.
    service.refresh_from_db()
    assert service.status == Service.Status.DEPLOYING


def test_it_changes_nothing_when_run_twice(env, owner, kube):
    service = deploy(env, owner, kind="tcp", port="5432", disk="1Gi", replicas="1")
    reconcile(service)
    wait_for(lambda: ready_pods(kube, service) == 1, what="a ready pod")

    def versions() -> dict[str, str]:
        found = {
            "namespace": kube.get("v1", "Namespace", env.namespace),
            "policy": kube.get("networking.k8s.io/v1", "NetworkPolicy", "ale-isolation", env.namespace),
            "deployment": kube.get("apps/v1", "Deployment", "web", env.namespace),
            "service": kube.get("v1", "Service", "web", env.namespace),
            "claim": kube.get("v1", "PersistentVolumeClaim", "web", env.namespace),
        }
        return {key: obj["metadata"]["resourceVersion"] for key, obj in found.items()}

    before = versions()
    assert reconcile(service) == "applied"
    assert versions() == before


def test_it_applies_the_newest_spec_even_from_a_stale_task(env, owner, kube):
    service = deploy(env, owner)
    stale_generation = service.generation
    service = deploy(env, owner, service, image="nginx:1.28", replicas="1")
    reconcile_service.apply(args=[service.pk, stale_generation]).get()
    deployment = kube.get("apps/v1", "Deployment", "web", env.namespace)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["metadata"]["annotations"]["ale.dev/generation"] == str(service.generation)


def test_it_scales_a_stopped_service_to_zero_and_back(env, owner, kube):
    service = deploy(env, owner)
    reconcile(service)
    wait_for(lambda: ready_pods(kube, service) == 2, what="two ready pods")
    service = actions.stop_service(owner, service)
    reconcile(service)
    wait_for(lambda: not pods_of(kube, service), what="no pods")
    assert kube.get("apps/v1", "Deployment", "web", env.namespace)["spec"]["replicas"] == 0
    service.refresh_from_db()
    assert service.status == Service.Status.STOPPING
    service = actions.start_service(owner, service)
    reconcile(service)
    wait_for(lambda: ready_pods(kube, service) == 2, what="two ready pods again")


def test_it_places_a_spot_service_on_spot_nodes(env, owner, kube):
    service = deploy(env, owner, capacity="spot", replicas="1")
    reconcile(service)
    [pod] = wait_for(lambda: pods_of(kube, service), what="a pod")
    assert pod["spec"]["nodeSelector"] == {"ale.dev/capacity": "spot"}
    assert pod["spec"]["tolerations"][0]["key"] == "ale.dev/capacity"


def test_it_removes_the_ingress_of_a_service_that_became_tcp(env, owner, kube):
    service = deploy(env, owner)
    reconcile(service)
    assert kube.get("networking.k8s.io/v1", "Ingress", "web", env.namespace) is not None
    service = deploy(env, owner, service, kind="tcp", port="6379")
    reconcile(service)
    assert kube.get("networking.k8s.io/v1", "Ingress", "web", env.namespace) is None
    assert kube.get("v1", "Service", "web", env.namespace)["spec"]["ports"][0]["name"] == "tcp"


def test_it_rolls_the_pods_on_a_redeploy_of_the_same_spec(env, owner, kube):
    service = deploy(env, owner, replicas="1")
    reconcile(service)
    [first] = wait_for(lambda: pods_of(kube, service), what="a pod")
    service = actions.redeploy_service(owner, service)
    reconcile(service)
    template = kube.get("apps/v1", "Deployment", "web", env.namespace)["spec"]["template"]
    assert template["metadata"]["annotations"]["ale.dev/redeployed-at"] == service.redeployed_at.isoformat()
    wait_for(
        lambda: [pod["metadata"]["name"] for pod in pods_of(kube, service)] not in ([], [first["metadata"]["name"]]),
        what="a new pod",
    )


def test_it_deletes_the_objects_and_then_the_row(env, owner, kube):
    service = deploy(env, owner)
    reconcile(service)
    service = actions.delete_service(owner, service)
    assert reconcile(service) == "deleted"
    assert not Service.objects.filter(pk=service.pk).exists()
    for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "Ingress")):
        assert kube.get(api_version, kind, "web", env.namespace) is None
    # The namespace is the environment's, not the service's.
    assert kube.get("v1", "Namespace", env.namespace) is not None


# --- disks ---------------------------------------------------------------------------------------


def deploy_database(env, owner, service: Service | None = None, **overrides: Any) -> Service:
    return deploy(env, owner, service, **{"name": "db", "kind": "tcp", "port": "5432", "replicas": "1", "disk": "1Gi", **overrides})


def claim_of(kube, service: Service) -> dict | None:
    return kube.get("v1", "PersistentVolumeClaim", service.name, service.namespace)


def bound_claim(kube, service: Service) -> dict | None:
    claim = claim_of(kube, service)
    return claim if claim and (claim.get("status") or {}).get("phase") == "Bound" else None


def running_pod(kube, service: Service) -> dict | None:
    running = [pod for pod in pods_of(kube, service) if (pod.get("status") or {}).get("phase") == "Running"]
    return running[0] if len(running) == 1 else None


def mounted_claims(pod: dict) -> list[str]:
    volumes = pod["spec"].get("volumes") or []
    return [volume["persistentVolumeClaim"]["claimName"] for volume in volumes if "persistentVolumeClaim" in volume]


def test_it_gives_a_database_a_bound_claim_that_its_running_pod_mounts(env, owner, kube):
    service = deploy_database(env, owner)
    assert reconcile(service) == "applied"
    claim = wait_for(lambda: bound_claim(kube, service), what="a bound claim")
    assert claim["spec"]["resources"]["requests"]["storage"] == "1024Mi"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    # No class named on the cluster: its default one provisioned the volume.
    assert claim["spec"]["storageClassName"] == "standard"
    assert claim["metadata"]["labels"]["ale.dev/service"] == service.public_id
    pod = wait_for(lambda: running_pod(kube, service), what="a running pod")
    assert mounted_claims(pod) == ["db"]
    container = pod["spec"]["containers"][0]
    assert {"name": "data", "mountPath": "/data"} in [
        {"name": m["name"], "mountPath": m["mountPath"]} for m in container["volumeMounts"]
    ]
    deployment = kube.get("apps/v1", "Deployment", "db", env.namespace)
    assert deployment["spec"]["strategy"]["type"] == "Recreate"


def test_it_keeps_the_same_claim_through_redeploys_stops_and_starts(env, owner, kube):
    service = deploy_database(env, owner)
    reconcile(service)
    uid = wait_for(lambda: bound_claim(kube, service), what="a bound claim")["metadata"]["uid"]
    first = wait_for(lambda: running_pod(kube, service), what="a running pod")

    service = actions.redeploy_service(owner, service)
    reconcile(service)
    second = wait_for(
        lambda: (pod := running_pod(kube, service)) and pod["metadata"]["uid"] != first["metadata"]["uid"] and pod,
        what="a new running pod",
    )
    assert mounted_claims(second) == ["db"]
    assert claim_of(kube, service)["metadata"]["uid"] == uid

    service = actions.stop_service(owner, service)
    reconcile(service)
    wait_for(lambda: not pods_of(kube, service), what="no pods")
    claim = claim_of(kube, service)
    assert claim["metadata"]["uid"] == uid and claim["status"]["phase"] == "Bound"
    assert not claim["metadata"].get("deletionTimestamp")

    service = actions.start_service(owner, service)
    reconcile(service)
    third = wait_for(lambda: running_pod(kube, service), what="a running pod after the start")
    assert mounted_claims(third) == ["db"]
    assert claim_of(kube, service)["metadata"]["uid"] == uid


def test_it_keeps_a_claims_class_when_the_cluster_names_another_later(env, owner, kube, kube_cluster):
    service = deploy_database(env, owner)
    assert reconcile(service) == "applied"
    wait_for(lambda: bound_claim(kube, service), what="a bound claim")
    kube_cluster.storage_class = "fast"
    kube_cluster.save()
    service.refresh_from_db()
    # The existing disk stays on its class (a claim's class cannot change) and the service
    # still applies; a new disk gets the class the cluster names now.
    assert reconcile(service) == "applied"
    assert bound_claim(kube, service)["spec"]["storageClassName"] == "standard"
    other = deploy_database(env, owner, name="cache")
    assert reconcile(other) == "applied"
    assert claim_of(kube, other)["spec"]["storageClassName"] == "fast"
    # Back to the default class: the claim made on "fast" keeps it too.
    kube_cluster.storage_class = ""
    kube_cluster.save()
    other.refresh_from_db()
    assert reconcile(other) == "applied"
    assert claim_of(kube, other)["spec"]["storageClassName"] == "fast"


def test_it_grows_the_claim_of_a_grown_disk(env, owner, kube):
    service = deploy_database(env, owner)
    reconcile(service)
    uid = wait_for(lambda: bound_claim(kube, service), what="a bound claim")["metadata"]["uid"]
    service = deploy_database(env, owner, service, disk="2Gi")
    assert reconcile(service) == "applied"
    claim = wait_for(
        lambda: (found := claim_of(kube, service)) and found["status"].get("capacity", {}).get("storage") == "2048Mi" and found,
        what="the claim expanded",
    )
    assert (claim["metadata"]["uid"], claim["spec"]["resources"]["requests"]["storage"]) == (uid, "2048Mi")


def test_it_fails_with_the_clusters_message_when_a_claim_would_shrink(env, owner, kube):
    service = deploy_database(env, owner, disk="2Gi")
    reconcile(service)
    wait_for(lambda: bound_claim(kube, service), what="a bound claim")
    # Past the form and the verbs (a hand-edited row): the cluster refuses, and says why.
    Service.objects.filter(pk=service.pk).update(disk_mib=1024)
    service.refresh_from_db()
    assert reconcile(service) == "failed"
    service.refresh_from_db()
    assert service.status == Service.Status.FAILED
    assert "spec.resources.requests.storage" in service.status_reason and "can not be less than" in service.status_reason
    assert claim_of(kube, service)["spec"]["resources"]["requests"]["storage"] == "2048Mi"


def test_it_deletes_the_claim_with_the_service(env, owner, kube):
    service = deploy_database(env, owner)
    reconcile(service)
    wait_for(lambda: running_pod(kube, service), what="a running pod")
    service = actions.delete_service(owner, service)
    assert reconcile(service) == "deleted"
    # pvc-protection holds the claim until the pod that mounted it is gone.
    wait_for(lambda: claim_of(kube, service) is None, what="the claim deleted")
    assert kube.get("apps/v1", "Deployment", "db", env.namespace) is None


def test_it_deletes_a_service_that_never_reached_the_cluster(env, owner):
    service = actions.delete_service(owner, deploy(env, owner))
    assert reconcile(service) == "deleted"
    assert not Service.objects.filter(pk=service.pk).exists()


def test_it_returns_quietly_when_the_service_is_gone():
    assert reconcile_service.apply(args=[987654321]).get() == "gone"


def test_it_retries_a_throttled_apply_and_then_succeeds(fault_env, owner, fault_cluster, devcluster, caplog):
    devcluster.faults.throttle(retry_after=1, count=2, path="/deployments/", method="PATCH")
    service = deploy(fault_env, owner)
    with caplog.at_level(logging.INFO, logger="services.tasks"):
        assert reconcile(service) == "applied"
    attempts = [r.getMessage() for r in caplog.records if "attempt" in r.getMessage()]
    assert sum("retrying" in line for line in attempts) == 2
    assert "attempt 3" in attempts[-1]
    assert client_for(fault_cluster).get("apps/v1", "Deployment", "web", fault_env.namespace) is not None
    service.refresh_from_db()
    assert service.status == Service.Status.DEPLOYING


def test_it_fails_with_the_clusters_message_on_an_invalid_spec(env, owner, kube):
    service = deploy(env, owner)
    # Past the form (a revision written under older rules, a hand-edited row): the cluster's
    # own validation answers 422, which no retry can fix.
    Service.objects.filter(pk=service.pk).update(port=70000)
    service.refresh_from_db()
    assert reconcile(service) == "failed"
    service.refresh_from_db()
    assert service.status == Service.Status.FAILED
    assert "containerPort" in service.status_reason
    assert "between 1 and 65535" in service.status_reason


def test_it_fails_with_the_quota_that_refused_it(env, owner, kube):
    reconcile_environment_now(env)
    kube.apply(
        [
            {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "tight", "namespace": env.namespace},
                "spec": {"hard": {"services": "0"}},
            }
        ]
    )
    service = deploy(env, owner)
    assert reconcile(service) == "failed"
    service.refresh_from_db()
    assert service.status == Service.Status.FAILED
    assert "exceeded quota: tight" in service.status_reason


def test_it_fails_on_an_injected_permanent_error_without_retrying(fault_env, owner, devcluster, caplog):
    devcluster.faults.error(422, message="spec.template: injected refusal", path="/deployments/", method="PATCH")
    service = deploy(fault_env, owner)
    with caplog.at_level(logging.INFO, logger="services.tasks"):
        assert reconcile(service) == "failed"
    assert not any("retrying" in r.getMessage() for r in caplog.records)
    service.refresh_from_db()
    assert (service.status, service.status_reason) == (Service.Status.FAILED, "spec.template: injected refusal")


def test_it_fails_once_retries_run_out(fault_env, owner, devcluster, caplog):
    devcluster.faults.error(503, path="/deployments/", method="PATCH")
    service = deploy(fault_env, owner)
    with caplog.at_level(logging.INFO, logger="services.tasks"):
        assert reconcile(service) == "failed"
    assert sum("retrying" in r.getMessage() for r in caplog.records) == MAX_RETRIES
    assert any("retries exhausted" in r.getMessage() for r in caplog.records)
    service.refresh_from_db()
    assert service.status == Service.Status.FAILED
    assert service.status_reason.startswith("The cluster 'Faulty' had a temporary failure")


def test_it_fails_when_the_cluster_cannot_be_reached(db, space, owner):
    cluster = Cluster.objects.create(
        name="gone", connection=Cluster.Connection.KUBECONFIG, kubeconfig=kubeconfig_text(f"http://127.0.0.1:{free_port()}", "x")
    )
    project = create_project(acting_user=owner, space=space, name="lost", display_name="", cluster=cluster)
    service = deploy(project.environments.get(), owner)
    assert reconcile(service) == "failed"
    service.refresh_from_db()
    assert service.status_reason == "The cluster 'gone' cannot be reached."


def test_it_leaves_a_newer_deploy_alone_when_an_older_one_fails(env, owner):
    service = deploy(env, owner)
    stale = Service.objects.get(pk=service.pk)
    deploy(env, owner, service, image="nginx:1.28")
    # A task that read the older row fails: the newer generation's "deploying" stays.
    assert not mark_failed(stale, stale.generation, "refused")
    service.refresh_from_db()
    assert service.status == Service.Status.DEPLOYING


def reconcile_environment_now(env) -> None:
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"


@pytest.mark.parametrize("retries", range(12))
def test_it_backs_off_with_jitter_up_to_a_cap(retries):
    delays = {retry_delay(retries) for _ in range(50)}
    assert all(0 <= delay <= min(RETRY_MAX_SECONDS, 2**retries) for delay in delays)


def test_it_waits_at_least_what_the_cluster_asks():
    assert all(retry_delay(0, retry_after=5) >= 5 for _ in range(20))
    assert retry_delay(0, retry_after=3600) == RETRY_MAX_SECONDS
