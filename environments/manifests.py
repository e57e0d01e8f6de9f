"""An environment as Kubernetes objects: pure functions from the model to manifest dicts."""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING, Any

from clusters.labels import ENVIRONMENT_LABEL, EXTERNAL_LABEL, MANAGED_BY, PROJECT_LABEL, SERVICE_LABEL, SPACE_LABEL

if TYPE_CHECKING:
    from environments.models import Environment
    from services.models import Service
    from spaces.allocation import Limits

ISOLATION_POLICY = "ale-isolation"


def environment_labels(environment: Environment) -> dict[str, str]:
    project = environment.project
    return {
        **MANAGED_BY,
        SPACE_LABEL: project.space.public_id,
        PROJECT_LABEL: project.public_id,
        ENVIRONMENT_LABEL: environment.public_id,
    }


def render_environment(environment: Environment) -> list[dict]:
    """The Namespace and the NetworkPolicy that isolates it, in the order they must be applied.

    The policy admits ingress only from pods of the same namespace and from the cluster's
    ingress controller (egress stays open): the services of an environment reach each other by
    name and port, their Access URLs reach them through the controller, nothing else does.
    """
    labels = environment_labels(environment)
    namespace = environment.namespace
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    controller = environment.cluster.ingress_controller_namespace
    if controller:
        # Every namespace carries this label, set by the API server itself (Kubernetes 1.21+).
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": controller}}})
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": labels},
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": ISOLATION_POLICY, "namespace": namespace, "labels": labels},
            "spec": {
                "podSelector": {},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": peers}],
            },
        },
    ]


ENV_SECRET = "ale-env"
EXTERNAL_POLICY = "ale-external-tcp"
_DNS_LABEL_MAX = 63


def render_env_secret(environment: Environment, variables: dict[str, str]) -> dict[str, Any]:
    """The Secret `ale-env`: every variable of the environment, read by each service through
    `envFrom` and by `${{ secrets.NAME }}` references. `data` (base64), not `stringData`, so
    that server-side apply owns exactly these keys and a removed variable goes away."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": ENV_SECRET, "namespace": environment.namespace, "labels": environment_labels(environment)},
        "type": "Opaque",
        "data": {key: base64.b64encode(value.encode()).decode() for key, value in sorted(variables.items())},
    }


def external_service_name(service: Service) -> str:
    """`<name>-external`, kept one DNS label: a long name is cut and given a hash of itself."""
    name = f"{service.name}-external"
    if len(name) <= _DNS_LABEL_MAX:
        return name
    digest = hashlib.sha256(service.name.encode()).hexdigest()[:8]
    keep = _DNS_LABEL_MAX - len("-external") - len(digest) - 1
    return f"{service.name[:keep].rstrip('-')}-{digest}-external"


def render_external_access(environment: Environment, tcp_services: list[Service]) -> list[dict[str, Any]]:
    """What the firewall's "Allow external TCP connections" adds: a NetworkPolicy admitting
    outside traffic to the TCP services' pods on their ports (from anywhere, or from the
    allow-list as `ipBlock`s), and per TCP service a Service of the cluster's external type
    (NodePort or LoadBalancer, with `loadBalancerSourceRanges` for the allow-list).

    Empty when the firewall is closed or there is no TCP service: the reconcile then deletes
    whatever an earlier state created.
    """
    if not environment.allow_external_tcp or not tcp_services:
        return []
    labels = environment_labels(environment)
    namespace = environment.namespace
    cidrs = list(environment.external_allow_cidrs)
    rule: dict[str, Any] = {
        "ports": [{"protocol": "TCP", "port": port} for port in sorted({s.port for s in tcp_services})]
    }
    if cidrs:
        rule["from"] = [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]
    manifests: list[dict[str, Any]] = [
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": {"name": EXTERNAL_POLICY, "namespace": namespace, "labels": labels},
            "spec": {
                "podSelector": {
                    "matchExpressions": [
                        {"key": SERVICE_LABEL, "operator": "In", "values": sorted(s.public_id for s in tcp_services)}
                    ]
                },
                "policyTypes": ["Ingress"],
                "ingress": [rule],
            },
        }
    ]
    service_type = environment.cluster.external_service_type
    for service in sorted(tcp_services, key=lambda s: s.name):
        spec: dict[str, Any] = {
            "type": service_type,
            "selector": {SERVICE_LABEL: service.public_id},
            "ports": [{"name": "tcp", "port": service.port, "targetPort": service.port, "protocol": "TCP"}],
        }
        if service_type == "LoadBalancer" and cidrs:
            spec["loadBalancerSourceRanges"] = cidrs
        manifests.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {
                    "name": external_service_name(service),
                    "namespace": namespace,
                    "labels": {**service.labels, EXTERNAL_LABEL: "true"},
                },
                "spec": spec,
            }
        )
    return manifests


QUOTA = "ale-quota"


def render_resource_quota(environment: Environment, limits: Limits) -> dict[str, Any]:
    """The ResourceQuota `ale-quota`: the cluster's own line under what ale checks.

    Every namespace of a space gets the space's *totals*. A quota is per namespace and cannot
    see the space's other namespaces, so the most it can honestly say is "this namespace never
    holds more than the whole space": ale's check before every deploy keeps the sum of all of
    them within the allocation, and the quota stops whatever goes around ale (a `kubectl
    scale`, a bug) from exceeding it in any one place. Nor can a quota tell spot from on-demand
    pods (scopes select priority classes, not node selectors), so each resource is the sum of
    both. Disk is the sum of the services' PersistentVolumeClaims (`requests.storage`), held
    whether their services run or not, as ale counts it.

    A rolling update adds up to a quarter of the replicas before old pods go (`maxSurge`); a
    namespace holding the whole space's allocation to the last millicore has no room for them,
    so its rollout waits (the Deployment reports the quota's refusal) until something stops.
    """
    cpu = limits.on_demand_cpu_millicores + limits.spot_cpu_millicores
    memory = limits.on_demand_memory_mib + limits.spot_memory_mib
    disk = limits.on_demand_disk_mib + limits.spot_disk_mib
    hard = {
        "requests.cpu": f"{cpu}m",
        "limits.cpu": f"{cpu}m",
        "requests.memory": f"{memory}Mi",
        "limits.memory": f"{memory}Mi",
        "requests.storage": f"{disk}Mi",
        "pods": str(limits.max_running_services * limits.max_replicas_per_service),
    }
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": QUOTA, "namespace": environment.namespace, "labels": environment_labels(environment)},
        "spec": {"hard": hard},
    }
