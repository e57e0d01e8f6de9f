"""An environment as Kubernetes objects: pure functions from the model to manifest dicts."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from environments.models import Environment

MANAGED_BY = {"app.kubernetes.io/managed-by": "ale"}
ISOLATION_POLICY = "ale-isolation"


def environment_labels(environment: Environment) -> dict[str, str]:
    project = environment.project
    return {
        **MANAGED_BY,
        "ale.dev/space": project.space.public_id,
        "ale.dev/project": project.public_id,
        "ale.dev/environment": environment.public_id,
    }


def render_environment(environment: Environment) -> list[dict]:
    """The Namespace and the NetworkPolicy that isolates it, in the order they must be applied.

    The policy admits ingress only from pods of the same namespace (egress stays open): the
    services of an environment reach each other by name and port, nothing else reaches them.
    An ingress controller runs in its own namespace, so on a cluster that enforces
    NetworkPolicies the Access URLs also need a policy admitting the controller; which
    namespace that is depends on the cluster and is not recorded on it yet.
    """
    labels = environment_labels(environment)
    namespace = environment.namespace
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
                "ingress": [{"from": [{"podSelector": {}}]}],
            },
        },
    ]
