"""Writing an environment's and a service's objects to their cluster, skipping what is unchanged.

Each object is applied with server-side apply, as rendered by the pure functions of
`environments/manifests.py` and `services/manifests.py`. A digest of what a successful apply
wrote is kept on the row (`Environment.applied_hash`, `Service.applied_hashes`, one per object),
and the next reconcile writes only objects whose digest differs: a redeploy of one service
applies its Deployment and nothing of its environment, and a reconcile of something unchanged
makes no write at all. A digest covers the cluster's configuration too, so that pointing a
cluster row elsewhere applies everything again.

A digest says what ale last wrote, not what the cluster holds now: an object deleted or edited
by hand is not seen here. `force=True` applies everything whatever the digests say; the periodic
resync asks for it when a service has had no Deployment for long (`services.resync`).

Nothing here writes a row but the digests, and enqueues nothing but the environment's reconcile
when its rows changed while it applied (`_reconcile_again_if_changed`): the tasks hand failures
to `services.lifecycle`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction

from clusters.client import KubeClient
from clusters.kubeconfig import configuration_fingerprint
from clusters.labels import EXTERNAL_SELECTOR, SERVICE_LABEL
from clusters.models import Cluster
from environments.manifests import (
    EXTERNAL_POLICY,
    render_env_secret,
    render_environment,
    render_external_access,
    render_resource_quota,
)
from environments.models import Environment, EnvironmentVariable
from services.manifests import CLAIM, DEPLOYMENT, MANAGED_KINDS, render_service
from services import queue
from services.models import Service
from spaces.resources import limits_for_space


def cluster_salt(cluster: Cluster) -> str:
    """What every digest of objects on `cluster` starts from: its configuration, so that a
    kubeconfig pointing somewhere else (or `make run`'s devcluster restarted) means "not applied"."""
    return configuration_fingerprint(cluster)


def object_key(manifest: dict[str, Any]) -> str:
    return f"{manifest['apiVersion']}/{manifest['kind']}/{manifest['metadata']['name']}"


def digest(salt: str, manifests: list[dict[str, Any]]) -> str:
    canonical = json.dumps(manifests, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{salt}\x00{canonical}".encode()).hexdigest()


# --- the environment's own objects ---------------------------------------------------------------


def _render_environment(environment: Environment, salt: str) -> tuple[list[dict], list[dict], list[Service], str]:
    """The environment's own objects as its rows now ask (`base`, `external`), the TCP services
    whose node ports the firewall gives, and the digest of them all."""
    variables = {v.key: v.value for v in EnvironmentVariable.objects.filter(environment=environment)}
    quota = render_resource_quota(environment, limits_for_space(environment.project.space))
    base = [*render_environment(environment), quota, render_env_secret(environment, variables)]
    tcp = []
    if environment.allow_external_tcp:
        tcp = list(
            Service.objects.filter(environment=environment, kind=Service.Kind.TCP)
            .exclude(status=Service.Status.DELETING)
            .select_related("environment__project__space", "environment__cluster")
        )
    external = render_external_access(environment, tcp)
    return base, external, tcp, digest(salt, base + external)


def apply_environment(kube: KubeClient, environment: Environment, *, salt: str, force: bool = False) -> bool:
    """Namespace, isolation, the `ale-env` Secret, the quota and the firewall's external access,
    unless they are what the last apply wrote; the node ports the cluster gives are recorded on
    the services for their Copy Address. Returns whether anything was applied."""
    base, external, tcp, wanted_hash = _render_environment(environment, salt)
    if not force and wanted_hash == environment.applied_hash:
        return False
    kube.apply(base)
    applied = kube.apply(external)
    _record_node_ports(environment, tcp, applied)
    # What an earlier state created and this one does not ask for.
    wanted = {m["metadata"]["name"] for m in external if m["kind"] == "Service"}
    existing, _ = kube.list("v1", "Service", namespace=environment.namespace, label_selector=EXTERNAL_SELECTOR)
    for obj in existing:
        name = obj["metadata"]["name"]
        if name not in wanted:
            kube.delete("v1", "Service", name, environment.namespace)
    if not external:
        kube.delete("networking.k8s.io/v1", "NetworkPolicy", EXTERNAL_POLICY, environment.namespace)
    Environment.objects.filter(pk=environment.pk).update(applied_hash=wanted_hash)
    environment.applied_hash = wanted_hash
    _reconcile_again_if_changed(environment, salt, wanted_hash)
    return True


def _reconcile_again_if_changed(environment: Environment, salt: str, applied_hash: str) -> None:
    """A change committed while this applied (a variable, the firewall, a TCP service) has a
    reconcile of its own, which may have written the cluster before this one wrote the older
    state, and its digest before this one wrote the older digest: the row would then say the
    cluster holds what it does not, and nothing would apply it again. So once its digest is
    written, an apply looks at what the rows ask for now; if that is not what it applied, it
    forgets the digest and reconciles the environment again."""
    current = Environment.objects.select_related("project__space", "cluster").filter(pk=environment.pk).first()
    if current is None or current.is_deleting:
        return
    if _render_environment(current, salt)[3] != applied_hash:
        forget_environment(environment)
        queue.send(queue.RECONCILE_ENVIRONMENT, environment.pk)


def applied_token(environment: Environment, salt: str) -> str | None:
    """What a batch's chunks are handed once its reconcile applied the environment's objects:
    while the row's digest and the cluster's configuration are those it saw, they are applied.
    None while the digest is forgotten (`forget_environment`): nothing vouches for them then."""
    if not environment.applied_hash:
        return None
    return hashlib.sha256(f"{salt}\x00{environment.applied_hash}".encode()).hexdigest()


def _record_node_ports(environment: Environment, tcp: list[Service], applied: list[dict]) -> None:
    ports: dict[str, int] = {}
    for obj in applied:
        if obj.get("kind") != "Service":
            continue
        spec = obj.get("spec") or {}
        port = (spec.get("ports") or [{}])[0]
        # NodePort: the node's port; LoadBalancer: the balancer listens on the service's port.
        value = port.get("nodePort") if spec.get("type") == "NodePort" else port.get("port")
        public_id = ((obj.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL)
        if public_id and value:
            ports[public_id] = int(value)
    for service in tcp:
        if service.external_node_port != ports.get(service.public_id):
            Service.objects.filter(pk=service.pk).update(external_node_port=ports.get(service.public_id))
    if not tcp:
        Service.objects.filter(environment=environment, external_node_port__isnull=False).update(external_node_port=None)


def forget_environment(environment: Environment) -> None:
    """The environment's objects may be gone from the cluster: the next reconcile applies them."""
    Environment.objects.filter(pk=environment.pk).update(applied_hash="")
    environment.applied_hash = ""


# --- a service's objects -------------------------------------------------------------------------

# What a service's pods need to start: the claim its disk mounts, then the Deployment.
WORKLOAD_KINDS = (CLAIM, DEPLOYMENT)


def apply_service(
    kube: KubeClient, service: Service, *, salt: str, force: bool = False, workloads_only: bool = False
) -> dict[str, str]:
    """Apply the service's objects that differ from what the last apply wrote, delete those its
    spec no longer asks for, and return the digests to record (`record_applied`).

    `workloads_only`: only what its pods need to start (`WORKLOAD_KINDS`: the disk, the
    Deployment), deleting nothing; the digests returned keep what was known of the rest, so that
    the full apply that follows writes the rest and skips these. A batch starts every service's
    pods this way before it spends the cluster's time on Services and Ingresses.

    Talks to the cluster only, never to the database, so that a batch can run it in threads.
    Raises `ClusterError`.
    """
    manifests = _keep_claim_class(kube, render_service(service))
    known = {} if force else dict(service.applied_hashes or {})
    if workloads_only:
        workloads = [m for m in manifests if (m["apiVersion"], m["kind"]) in WORKLOAD_KINDS]
        hashes = {object_key(m): digest(salt, [m]) for m in workloads}
        changed = [m for m in workloads if known.get(object_key(m)) != hashes[object_key(m)]]
        if changed:
            kube.apply(changed)
        return {**known, **hashes}
    hashes = {object_key(m): digest(salt, [m]) for m in manifests}
    changed = [m for m in manifests if known.get(object_key(m)) != hashes[object_key(m)]]
    if changed:
        kube.apply(changed)
    rendered = {(m["apiVersion"], m["kind"]) for m in manifests}
    # What the spec no longer asks for (the Ingress of a service that became TCP): what the last
    # apply wrote, or every such kind when that is not known. Never the claim: the rules keep a
    # disk from going while its service exists, and if a spec slipped past them, a claim left
    # over costs storage where deleting it costs data.
    for api_version, kind in MANAGED_KINDS:
        if (api_version, kind) in rendered or (api_version, kind) == CLAIM:
            continue
        if not known or f"{api_version}/{kind}/{service.name}" in known:
            kube.delete(api_version, kind, service.name, service.namespace)
    return hashes


def record_applied(service: Service, hashes: dict[str, str]) -> bool:
    """Keep the digests of what was just applied, if the service is still at the generation that
    was applied. When a newer one was written meanwhile, its own reconcile may have run before
    this stale apply and been overwritten by it: the digests are forgotten instead, and the
    caller reconciles again. Returns whether they were kept."""
    if Service.objects.filter(pk=service.pk, generation=service.generation).update(applied_hashes=hashes):
        service.applied_hashes = hashes
        return True
    forget_service(service)
    return False


def record_applied_many(applied: list[tuple[Service, dict[str, str]]]) -> list[Service]:
    """`record_applied` for a chunk's services in three queries, not one per service: the rows
    are locked (in primary key order, as the watcher locks them) and the digests are kept for
    those still at the generation that was applied. Returns the others, whose digests are
    forgotten: the caller reconciles them again."""
    if not applied:
        return []
    with transaction.atomic():
        generations = dict(
            Service.objects.select_for_update()
            .filter(pk__in=[service.pk for service, _ in applied])
            .order_by("pk")
            .values_list("pk", "generation")
        )
        kept = [service for service, _ in applied if generations.get(service.pk) == service.generation]
        stale = [service for service, _ in applied if generations.get(service.pk) != service.generation]
        for service, hashes in applied:
            service.applied_hashes = hashes if generations.get(service.pk) == service.generation else {}
        Service.objects.bulk_update(kept, ["applied_hashes"])
        if stale:
            Service.objects.filter(pk__in=[service.pk for service in stale]).update(applied_hashes={})
    return stale


def forget_service(service: Service) -> None:
    """The service's objects may not be what the digests say (being deleted, a stale apply)."""
    Service.objects.filter(pk=service.pk).update(applied_hashes={})
    service.applied_hashes = {}


def _keep_claim_class(kube: KubeClient, manifests: list[dict]) -> list[dict]:
    """A claim keeps the StorageClass it was made with: the class of a claim cannot change,
    so one named on the cluster later applies to new disks, not to those that exist.

    Applied only where it matters, so that an unchanged claim is not written again: when the
    rendered class differs, or when ale had applied a class that is no longer rendered (server-
    side apply would otherwise remove the field, which the cluster refuses).
    """
    for manifest in manifests:
        if (manifest["apiVersion"], manifest["kind"]) != CLAIM:
            continue
        meta = manifest["metadata"]
        existing = kube.get(*CLAIM, meta["name"], meta["namespace"])
        current = ((existing or {}).get("spec") or {}).get("storageClassName")
        if current is None:
            continue
        wanted = manifest["spec"].get("storageClassName")
        if (wanted is not None and wanted != current) or (wanted is None and _applied_class(existing)):
            manifest["spec"]["storageClassName"] = current
    return manifests


def _applied_class(claim: dict) -> bool:
    """Whether ale's own applies own the claim's `spec.storageClassName`."""
    for entry in claim["metadata"].get("managedFields") or []:
        if entry.get("manager") == "ale" and entry.get("operation") == "Apply":
            if "f:storageClassName" in ((entry.get("fieldsV1") or {}).get("f:spec") or {}):
                return True
    return False
