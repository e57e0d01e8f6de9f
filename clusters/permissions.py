"""Does ale hold, in a cluster, every permission its code uses? Asked before any deploy needs one.

The permissions are the rules of deploy/kubernetes/base/rbac.yaml, read as they ship (the
image copies that file). tests/deploy/test_rbac.py derives what ale's code calls from the code
itself and holds that file to it exactly, so this module needs no list of its own: a new call
in ale changes the derivation, the file, and what is checked here, together.

Each rule is asked of the cluster as a SelfSubjectAccessReview for ale's own identity there
(the kubeconfig's user, or the pod's service account), and what is refused is named the way
`kubectl auth can-i` spells it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from django.conf import settings

from clusters.client import client_for
from clusters.errors import ClusterError
from clusters.models import Cluster

RBAC_FILE = Path(settings.BASE_DIR) / "deploy" / "kubernetes" / "base" / "rbac.yaml"


@dataclass(frozen=True, order=True)
class Permission:
    group: str
    resource: str  # a plural, or plural/subresource
    verb: str
    namespace: str = ""  # empty: every namespace and the cluster scope

    def __str__(self) -> str:
        """`create deployments.apps`, `get pods/log`, `update leases.coordination.k8s.io in namespace "ale"`."""
        plural, slash, subresource = self.resource.partition("/")
        qualified = f"{plural}.{self.group}{slash}{subresource}" if self.group else self.resource
        scope = f' in namespace "{self.namespace}"' if self.namespace else ""
        return f"{self.verb} {qualified}{scope}"


@dataclass
class AccessCheck:
    """What a check found: `missing` permissions of `checked`, or why it could not ask (`error`)."""

    cluster: str
    checked: list[Permission] = field(default_factory=list)
    missing: list[Permission] = field(default_factory=list)
    error: str = ""

    @property
    def complete(self) -> bool:
        return not self.error and not self.missing

    def summary(self) -> str:
        if self.error:
            return f"Could not check ale's access to '{self.cluster}': {self.error}"
        if not self.missing:
            return f"All {len(self.checked)} permissions ale uses in '{self.cluster}' are granted."
        names = "; ".join(str(p) for p in self.missing)
        return f"{self.headline()}: {names}."

    def headline(self) -> str:
        return (f"{len(self.missing)} of the {len(self.checked)} permissions ale uses in '{self.cluster}' are missing; "
                "grant them (deploy/kubernetes/base/rbac.yaml) before deploying there")


def _rules(kind: str) -> list[dict]:
    documents = [d for d in yaml.safe_load_all(RBAC_FILE.read_text()) if d]
    (role,) = [d for d in documents if d.get("kind") == kind]
    return role["rules"]


def _holds_the_lease(cluster: Cluster) -> bool:
    """The watcher's Lease lives in ale's own cluster, or in the one WATCHER_LEASE_CLUSTER names."""
    if settings.WATCHER_LEASE_CLUSTER:
        return cluster.name == settings.WATCHER_LEASE_CLUSTER
    return cluster.connection == Cluster.Connection.IN_CLUSTER


def required_permissions(cluster: Cluster) -> list[Permission]:
    """The ClusterRole's rules everywhere; the leader Role's in the Lease's namespace where it lives."""
    needed = {
        Permission(group, resource, verb)
        for rule in _rules("ClusterRole")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    if _holds_the_lease(cluster):
        needed |= {
            Permission(group, resource, verb, settings.WATCHER_LEASE_NAMESPACE)
            for rule in _rules("Role")
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    return sorted(needed)


def check_access(cluster: Cluster) -> AccessCheck:
    """Ask the cluster about each permission ale uses. Never raises for the cluster's sake: an
    unusable configuration or an unreachable cluster is reported in `error`."""
    result = AccessCheck(cluster=cluster.label)
    try:
        kube = client_for(cluster)
        for permission in required_permissions(cluster):
            allowed = kube.can_i(permission.verb, permission.group, permission.resource, namespace=permission.namespace)
            result.checked.append(permission)
            if not allowed:
                result.missing.append(permission)
    except ClusterError as exc:
        result.error = exc.user_message
    return result
