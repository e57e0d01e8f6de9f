"""Manifests rendered from models: pure functions, checked without a cluster."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from environments.manifests import render_environment
from services.manifests import render_service
from services.models import Service

pytestmark = pytest.mark.django_db


def make_service(env, **spec: Any) -> Service:
    """An unsaved service: rendering needs no row."""
    defaults: dict[str, Any] = {"name": "api", "image": "ghcr.io/acme/api:v2", "port": 8080, "generation": 3}
    return Service(environment=env, **{**defaults, **spec})


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {m["kind"]: m for m in manifests}


def deployment_of(service: Service) -> dict:
    return by_kind(render_service(service))["Deployment"]


def container_of(service: Service) -> dict:
    [container] = deployment_of(service)["spec"]["template"]["spec"]["containers"]
    return container


def test_it_renders_the_namespace_with_the_ale_ids(main_env):
    namespace, policy = render_environment(main_env)
    project = main_env.project
    assert namespace == {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": f"ale-{main_env.public_id}",
            "labels": {
                "app.kubernetes.io/managed-by": "ale",
                "ale.dev/space": project.space.public_id,
                "ale.dev/project": project.public_id,
                "ale.dev/environment": main_env.public_id,
            },
        },
    }
    assert policy["metadata"]["namespace"] == namespace["metadata"]["name"]
    assert policy["metadata"]["labels"] == namespace["metadata"]["labels"]


def test_it_isolates_the_namespace_admitting_only_its_pods_and_the_ingress_controller(main_env):
    policy = render_environment(main_env)[1]
    assert policy["kind"] == "NetworkPolicy"
    assert policy["metadata"]["name"] == "ale-isolation"
    assert policy["spec"] == {
        "podSelector": {},
        "policyTypes": ["Ingress"],
        # Pods of the same namespace, and the namespace of the cluster's ingress controller (so
        # Access URLs work where policies are enforced): no other namespace, no ipBlock.
        "ingress": [
            {
                "from": [
                    {"podSelector": {}},
                    {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
                ]
            }
        ],
    }


def test_a_cluster_names_its_ingress_controller_or_none(main_env):
    cluster = main_env.cluster
    cluster.ingress_controller_namespace = "kube-system"
    assert render_environment(main_env)[1]["spec"]["ingress"][0]["from"][1] == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
    }
    cluster.ingress_controller_namespace = ""
    assert render_environment(main_env)[1]["spec"]["ingress"] == [{"from": [{"podSelector": {}}]}]


def test_it_labels_every_object_of_a_service(main_env):
    service = make_service(main_env)
    for manifest in render_service(service):
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "ale"
        assert labels["app.kubernetes.io/name"] == "api"
        assert labels["ale.dev/service"] == service.public_id
        assert labels["ale.dev/environment"] == main_env.public_id
        assert labels["ale.dev/project"] == main_env.project.public_id
        assert labels["ale.dev/space"] == main_env.project.space.public_id
        assert manifest["metadata"]["namespace"] == main_env.namespace
        assert manifest["metadata"]["name"] == "api"


def test_it_renders_a_deployment_selecting_on_the_service_id(main_env):
    service = make_service(main_env, replicas=3)
    deployment = deployment_of(service)
    assert deployment["apiVersion"] == "apps/v1"
    assert deployment["metadata"]["annotations"] == {"ale.dev/generation": "3"}
    spec = deployment["spec"]
    assert spec["replicas"] == 3
    assert spec["selector"] == {"matchLabels": {"ale.dev/service": service.public_id}}
    assert spec["template"]["metadata"]["labels"]["ale.dev/service"] == service.public_id
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert "annotations" not in spec["template"]["metadata"]


def test_it_scales_a_stopped_service_to_zero(main_env):
    service = make_service(main_env, replicas=3, desired_state=Service.DesiredState.STOPPED)
    assert deployment_of(service)["spec"]["replicas"] == 0


def test_it_renders_the_container(main_env):
    service = make_service(
        main_env,
        command=["sh", "-c"],
        args=["exec server --port 8080"],
        env_vars=[{"name": "MODE", "value": "prod"}, {"name": "TOKEN", "secret": "API_TOKEN"}],
    )
    container = container_of(service)
    assert container["image"] == "ghcr.io/acme/api:v2"
    assert container["command"] == ["sh", "-c"]
    assert container["args"] == ["exec server --port 8080"]
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["env"] == [
        {"name": "MODE", "value": "prod"},
        {
            "name": "TOKEN",
            "valueFrom": {"secretKeyRef": {"name": "ale-env", "key": "API_TOKEN", "optional": False}},
        },
    ]


def test_it_leaves_out_an_empty_command_so_the_image_entrypoint_runs(main_env):
    container = container_of(make_service(main_env))
    assert "command" not in container and "args" not in container


def test_it_sets_requests_equal_to_limits(main_env):
    container = container_of(make_service(main_env, cpu_millicores=250, memory_mib=256))
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "250m", "memory": "256Mi"},
    }


def test_it_probes_a_web_service_over_http_on_its_health_path(main_env):
    container = container_of(make_service(main_env, health_check_path="/healthz"))
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": 8080}
        assert "tcpSocket" not in container[probe]


def test_it_probes_a_tcp_service_on_its_port(main_env):
    container = container_of(make_service(main_env, kind=Service.Kind.TCP, port=5432))
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"] == {"port": 5432}
        assert "httpGet" not in container[probe]
    assert container["ports"][0]["name"] == "tcp"


def test_it_places_spot_services_with_the_clusters_selector_and_tolerations(main_env):
    cluster = main_env.cluster
    pod = deployment_of(make_service(main_env, capacity=Service.Capacity.SPOT))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == cluster.spot_node_selector == {"ale.dev/capacity": "spot"}
    assert pod["tolerations"] == cluster.spot_tolerations
    assert pod["tolerations"][0]["key"] == "ale.dev/capacity"


def test_it_places_on_demand_services_anywhere(main_env):
    pod = deployment_of(make_service(main_env))["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def make_database(env, **spec: Any) -> Service:
    return make_service(env, **{"name": "db", "kind": Service.Kind.TCP, "port": 5432, "disk_mib": 2048, **spec})


def test_it_gives_a_tcp_service_a_claim_for_its_disk(main_env):
    service = make_database(main_env)
    claim = by_kind(render_service(service))["PersistentVolumeClaim"]
    assert claim == {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "db", "namespace": main_env.namespace, "labels": service.labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2048Mi"}}},
    }


def test_it_applies_the_claim_before_the_deployment_that_mounts_it(main_env):
    kinds = [m["kind"] for m in render_service(make_database(main_env))]
    assert kinds == ["PersistentVolumeClaim", "Deployment", "Service"]


def test_it_mounts_the_claim_at_data(main_env):
    pod = deployment_of(make_database(main_env))["spec"]["template"]["spec"]
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "db"}}]
    assert pod["containers"][0]["volumeMounts"] == [{"name": "data", "mountPath": "/data"}]


def test_it_asks_no_ephemeral_storage_for_a_disk(main_env):
    resources = container_of(make_database(main_env))["resources"]
    assert resources["requests"] == resources["limits"] == {"cpu": "250m", "memory": "256Mi"}
    assert "emptyDir" not in str(deployment_of(make_database(main_env)))


def test_it_names_the_storage_class_only_when_the_cluster_has_one(main_env):
    main_env.cluster.storage_class = "fast-ssd"
    claim = by_kind(render_service(make_database(main_env)))["PersistentVolumeClaim"]
    assert claim["spec"]["storageClassName"] == "fast-ssd"
    main_env.cluster.storage_class = ""
    claim = by_kind(render_service(make_database(main_env)))["PersistentVolumeClaim"]
    assert "storageClassName" not in claim["spec"]


def test_it_recreates_the_pod_of_a_service_with_a_disk(main_env):
    # A surge pod would wait forever for a ReadWriteOnce volume attached to the old pod's node.
    assert deployment_of(make_database(main_env))["spec"]["strategy"] == {"type": "Recreate"}
    rolling = deployment_of(make_database(main_env, disk_mib=0))["spec"]["strategy"]
    assert rolling["type"] == "RollingUpdate"


def test_it_runs_at_most_one_pod_of_a_service_with_a_disk(main_env, owner):
    from importlib import import_module

    from django.apps import apps

    migration = import_module("services.migrations.0005_one_replica_with_a_disk")

    # Services saved before the one-replica rule: the migration brings those with a disk to one.
    with_disk = make_database(main_env, replicas=3)
    without = make_database(main_env, name="cache", replicas=3, disk_mib=0)
    Service.objects.bulk_create([with_disk, without])
    migration.one_replica_with_a_disk(apps, None)
    assert deployment_of(Service.objects.get(name="db"))["spec"]["replicas"] == 1
    assert deployment_of(Service.objects.get(name="cache"))["spec"]["replicas"] == 3


def test_it_keeps_the_claim_of_a_stopped_service(main_env):
    service = make_database(main_env, desired_state=Service.DesiredState.STOPPED)
    manifests = by_kind(render_service(service))
    assert manifests["Deployment"]["spec"]["replicas"] == 0
    assert manifests["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "2048Mi"


def test_it_gives_no_disk_without_one(main_env):
    service = make_service(main_env, kind=Service.Kind.TCP, port=5432)
    pod = deployment_of(service)["spec"]["template"]["spec"]
    assert "volumes" not in pod and "volumeMounts" not in pod["containers"][0]
    assert "PersistentVolumeClaim" not in by_kind(render_service(service))


def test_it_gives_a_web_service_no_claim_even_with_a_disk_size_saved(main_env):
    service = make_service(main_env, disk_mib=1024)
    assert [m["kind"] for m in render_service(service)] == ["Deployment", "Service", "Ingress"]
    assert "volumes" not in deployment_of(service)["spec"]["template"]["spec"]


def test_it_rolls_pods_on_an_explicit_redeploy(main_env):
    when = dt.datetime(2025, 11, 26, 9, 30, tzinfo=dt.UTC)
    template = deployment_of(make_service(main_env, redeployed_at=when))["spec"]["template"]
    assert template["metadata"]["annotations"] == {"ale.dev/redeployed-at": "2025-11-26T09:30:00+00:00"}


def test_it_renders_a_cluster_ip_service(main_env):
    service = make_service(main_env)
    k8s_service = by_kind(render_service(service))["Service"]
    assert k8s_service["spec"] == {
        "type": "ClusterIP",
        "selector": {"ale.dev/service": service.public_id},
        "ports": [{"name": "http", "port": 8080, "targetPort": 8080, "protocol": "TCP"}],
    }


def test_it_routes_the_generated_host_and_custom_domains_to_a_web_service(main_env):
    service = make_service(main_env, custom_domains=["shop.example.com", "www.example.com"])
    ingress = by_kind(render_service(service))["Ingress"]
    assert "ingressClassName" not in ingress["spec"]
    hosts = [rule["host"] for rule in ingress["spec"]["rules"]]
    assert hosts == [f"api-{main_env.public_id}.localtest.me", "shop.example.com", "www.example.com"]
    for rule in ingress["spec"]["rules"]:
        assert rule["http"]["paths"] == [
            {
                "path": "/",
                "pathType": "Prefix",
                "backend": {"service": {"name": "api", "port": {"number": 8080}}},
            }
        ]


def test_it_gives_a_tcp_service_no_ingress(main_env):
    kinds = [m["kind"] for m in render_service(make_service(main_env, kind=Service.Kind.TCP))]
    assert kinds == ["Deployment", "Service"]


def test_it_gives_a_web_service_no_ingress_without_any_host(main_env):
    main_env.cluster.ingress_domain = ""
    assert [m["kind"] for m in render_service(make_service(main_env))] == ["Deployment", "Service"]


def test_it_shortens_a_generated_host_that_would_not_be_a_dns_label(main_env):
    long_a = make_service(main_env, name="a" * 60 + "-one")
    long_b = make_service(main_env, name="a" * 60 + "-two")
    label_a = long_a.generated_host.split(".")[0]
    assert len(label_a) <= 63 and label_a.endswith(f"-{main_env.public_id}")
    assert long_a.generated_host != long_b.generated_host


def test_it_gives_addresses_and_access_urls(main_env):
    web = make_service(main_env)
    assert web.private_address == "api:8080"
    assert web.access_url == f"http://api-{main_env.public_id}.localtest.me"
    # No TLS on the cluster: the link does not promise a certificate nobody issued.
    web.custom_domains = ["shop.example.com"]
    assert web.access_url == "http://shop.example.com"
    db = make_service(main_env, name="db", kind=Service.Kind.TCP, port=5432)
    assert db.private_address == "db:5432"
    assert db.access_url == ""


def test_it_snapshots_and_restores_the_spec(main_env):
    service = make_service(main_env, env_vars=[{"name": "A", "value": "1"}], replicas=2)
    spec = service.snapshot()
    assert spec["replicas"] == 2 and "name" not in spec
    service.env_vars[0]["value"] = "changed"
    assert spec["env_vars"] == [{"name": "A", "value": "1"}]
    other = make_service(main_env, name="other")
    other.apply_snapshot({"replicas": 5, "unknown": "ignored"})
    assert other.replicas == 5 and other.image == "ghcr.io/acme/api:v2"
