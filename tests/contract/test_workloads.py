"""Deployments as ale runs services: pods become Ready, rollouts, scaling, images that fail."""
from __future__ import annotations

from kubernetes import client

from tests.contract.support import deployment_manifest, wait_for

APPLY = {"field_manager": "ale", "force": True, "_content_type": "application/apply-patch+yaml"}


def _pods(core: client.CoreV1Api, namespace: str, name: str) -> list:
    return core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={name}").items


def _ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def _rolled_out(apps: client.AppsV1Api, namespace: str, name: str, replicas: int):
    d = apps.read_namespaced_deployment_status(name, namespace)
    s = d.status
    done = (s.observed_generation == d.metadata.generation and (s.updated_replicas or 0) == replicas
            and (s.available_replicas or 0) == replicas and (s.replicas or 0) == replicas)
    return d if done else None


def test_it_runs_deployment_pods_until_ready(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", replicas=2), **APPLY)
    d = wait_for(lambda: _rolled_out(apps, namespace, "web", 2), timeout=120, message="rollout")
    conditions = {c.type: c for c in d.status.conditions}
    assert conditions["Available"].status == "True"
    assert conditions["Available"].reason == "MinimumReplicasAvailable"
    assert conditions["Progressing"].reason == "NewReplicaSetAvailable"
    pods = _pods(core, namespace, "web")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Running" and _ready(pod)
        assert pod.spec.node_name and pod.status.pod_ip and pod.status.host_ip and pod.status.start_time
        status = pod.status.container_statuses[0]
        assert status.ready and status.started and status.state.running.started_at
        assert status.container_id and status.image_id and status.restart_count == 0
        owner = pod.metadata.owner_references[0]
        assert owner.kind == "ReplicaSet" and owner.controller
        assert owner.name.startswith("web-") and pod.metadata.name.startswith(owner.name + "-")
        assert pod.metadata.labels["pod-template-hash"] == owner.name.removeprefix("web-")
    rs = apps.read_namespaced_replica_set(pods[0].metadata.owner_references[0].name, namespace)
    assert rs.metadata.owner_references[0].kind == "Deployment"
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"


def test_it_rolls_out_a_template_change(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", replicas=2), **APPLY)
    wait_for(lambda: _rolled_out(apps, namespace, "web", 2), timeout=120, message="first rollout")
    apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", image="nginx:1.28", replicas=2),
                                     **APPLY)
    d = wait_for(lambda: _rolled_out(apps, namespace, "web", 2), timeout=120, message="second rollout")
    assert d.metadata.generation == 2
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    sets = {rs.metadata.annotations["deployment.kubernetes.io/revision"]: rs
            for rs in apps.list_namespaced_replica_set(namespace).items}
    assert sets["1"].spec.replicas == 0 and sets["2"].spec.replicas == 2
    wait_for(lambda: all(p.spec.containers[0].image == "nginx:1.28" for p in _pods(core, namespace, "web"))
             and len(_pods(core, namespace, "web")) == 2, timeout=60, message="old pods gone")
    scaling = [e.message for e in core.list_namespaced_event(
        namespace, field_selector="involvedObject.kind=Deployment,reason=ScalingReplicaSet").items]
    assert any(m.startswith(f"Scaled up replica set {sets['2'].metadata.name} to") for m in scaling)
    assert any(m.startswith(f"Scaled down replica set {sets['1'].metadata.name} to 0") for m in scaling)


def test_it_scales_to_zero_and_back(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", replicas=1), **APPLY)
    wait_for(lambda: _rolled_out(apps, namespace, "web", 1), timeout=120, message="rollout")
    scale = apps.read_namespaced_deployment_scale("web", namespace)
    assert scale.spec.replicas == 1 and scale.status.selector == "app.kubernetes.io/name=web"
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}})
    wait_for(lambda: not _pods(core, namespace, "web"), timeout=90, message="pods removed")
    d = apps.read_namespaced_deployment("web", namespace)
    assert d.spec.replicas == 0 and not d.status.replicas
    apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 1}})
    wait_for(lambda: _rolled_out(apps, namespace, "web", 1), timeout=120, message="scaled back")


def test_it_deleting_a_deployment_removes_its_replica_sets_and_pods(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", replicas=1), **APPLY)
    wait_for(lambda: _rolled_out(apps, namespace, "web", 1), timeout=120, message="rollout")
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Foreground")
    wait_for(lambda: not apps.list_namespaced_replica_set(namespace).items and not _pods(core, namespace, "web"),
             timeout=90, message="garbage collection")


def test_it_shows_image_pull_back_off_for_an_image_that_does_not_exist(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment(
        "web", namespace, deployment_manifest("web", image="registry.invalid/ale/does-not-exist:1"), **APPLY)

    def waiting_reason():
        pods = _pods(core, namespace, "web")
        statuses = pods[0].status.container_statuses if pods else None
        state = statuses[0].state if statuses else None
        return state.waiting.reason if state and state.waiting else None

    wait_for(lambda: waiting_reason() == "ImagePullBackOff", timeout=120, message="ImagePullBackOff")
    pod = _pods(core, namespace, "web")[0]
    assert pod.status.phase == "Pending" and not _ready(pod)
    warnings = core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod.metadata.name},type=Warning").items
    assert any(e.reason == "Failed" and e.message.startswith('Failed to pull image "registry.invalid')
               for e in warnings)
    d = apps.read_namespaced_deployment_status("web", namespace)
    assert {c.type: c.status for c in d.status.conditions}["Available"] == "False"
    assert d.status.unavailable_replicas == 1


def test_it_shows_crash_loop_back_off_for_a_container_that_keeps_failing(kube_api, namespace):
    core, apps = client.CoreV1Api(kube_api), client.AppsV1Api(kube_api)
    manifest = deployment_manifest("web", image="busybox:1.36", command=["sh", "-c", "echo crash; exit 1"])
    apps.patch_namespaced_deployment("web", namespace, manifest, **APPLY)

    def status():
        pods = _pods(core, namespace, "web")
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0] if statuses else None

    crashed = wait_for(lambda: (lambda s: s if s and s.state.waiting and s.state.waiting.reason == "CrashLoopBackOff"
                                else None)(status()), timeout=120, message="CrashLoopBackOff")
    assert crashed.restart_count >= 1
    assert crashed.last_state.terminated.exit_code == 1 and crashed.last_state.terminated.reason == "Error"
    pod = _pods(core, namespace, "web")[0]
    back_off = wait_for(lambda: [e for e in core.list_namespaced_event(
        namespace, field_selector=f"involvedObject.name={pod.metadata.name},reason=BackOff").items], timeout=60,
                        message="BackOff event")
    assert back_off[0].type == "Warning"
    assert back_off[0].message.startswith("Back-off restarting failed container app in pod ")


def test_it_bumps_the_generation_when_scaling_through_the_subresource(kube_api, namespace):
    apps = client.AppsV1Api(kube_api)
    apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", replicas=0), **APPLY)
    scaled = apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 0}},
                                                    field_manager="ale-scale")
    assert scaled.spec.replicas == 0
    before = apps.read_namespaced_deployment("web", namespace).metadata.generation
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 1}}, field_manager="ale-scale")
    after = apps.read_namespaced_deployment("web", namespace)
    assert after.metadata.generation == before + 1
    entry = next(e for e in after.metadata.managed_fields if e.manager == "ale-scale")
    assert entry.operation == "Update" and entry.subresource == "scale"
    assert entry.fields_v1 == {"f:spec": {"f:replicas": {}}}
    forced = apps.patch_namespaced_deployment("web", namespace, deployment_manifest("web", replicas=0), **APPLY)
    assert forced.spec.replicas == 0
    assert not any(e.manager == "ale-scale" for e in forced.metadata.managed_fields)
