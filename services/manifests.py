"""A service as Kubernetes objects: pure functions from the model to manifest dicts.

`render_service` returns what must exist for the service as it is now; `MANAGED_KINDS` is
every kind it may return, so that the reconcile task can delete what the current spec no
longer asks for (the Ingress of a service that became a TCP service), and deleting the service
deletes all of it. The disk of a TCP service is a PersistentVolumeClaim named after it: it
outlives pods, stops and redeploys, and goes only with the service.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from clusters.labels import BUILD_LABEL, GENERATION_ANNOTATION, REDEPLOYED_AT_ANNOTATION, SERVICE_LABEL
from environments.manifests import environment_labels

if TYPE_CHECKING:
    from services.models import Build, Service

# Secret holding the environment's secrets; a `${{ secrets.NAME }}` value reads key NAME of it.
ENV_SECRET = "ale-env"
DATA_VOLUME = "data"
DATA_MOUNT_PATH = "/data"

DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE = ("v1", "Service")
INGRESS = ("networking.k8s.io/v1", "Ingress")
CLAIM = ("v1", "PersistentVolumeClaim")
# In the order to delete them: traffic first, then the workload, then the disk it mounted (the
# claim's pvc-protection finalizer holds it until the last pod using it is gone).
MANAGED_KINDS = (INGRESS, SERVICE, DEPLOYMENT, CLAIM)


def _metadata(service: Service, **extra: Any) -> dict[str, Any]:
    return {"name": service.name, "namespace": service.namespace, "labels": service.labels, **extra}


def _selector(service: Service) -> dict[str, str]:
    # The public id, not the name: it never changes and never collides with a user's labels.
    return {SERVICE_LABEL: service.public_id}


def _port_name(service: Service) -> str:
    return "http" if service.is_web else "tcp"


def _env(service: Service) -> list[dict[str, Any]]:
    env = []
    for item in service.env_vars:
        if "secret" in item:
            env.append(
                {
                    "name": item["name"],
                    # Not optional: a missing secret should stop the container from starting
                    # (CreateContainerConfigError, shown on the card), not run it without.
                    "valueFrom": {"secretKeyRef": {"name": ENV_SECRET, "key": item["secret"], "optional": False}},
                }
            )
        else:
            env.append({"name": item["name"], "value": item.get("value", "")})
    return env


def _probes(service: Service) -> dict[str, Any]:
    if service.is_web:
        check: dict[str, Any] = {"httpGet": {"path": service.health_check_path or "/", "port": service.port}}
    else:
        check = {"tcpSocket": {"port": service.port}}
    return {
        "readinessProbe": {**check, "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 3},
        # Generous, so that a slow start is not mistaken for a hang and killed in a loop.
        "livenessProbe": {
            **check,
            "initialDelaySeconds": 15,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 6,
        },
    }


def _container(service: Service) -> dict[str, Any]:
    quantities = {"cpu": f"{service.cpu_millicores}m", "memory": f"{service.memory_mib}Mi"}
    container: dict[str, Any] = {
        "name": service.name,
        "image": service.image,
        "ports": [{"name": _port_name(service), "containerPort": service.port, "protocol": "TCP"}],
        "env": _env(service),
        # Every variable of the environment (Settings → Secret Management); optional, so that an
        # environment without any still starts its services. `env` above wins on a shared key.
        "envFrom": [{"secretRef": {"name": ENV_SECRET, "optional": True}}],
        # Requests equal limits: the service gets exactly what the space is charged for.
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
        **_probes(service),
    }
    if service.command:
        container["command"] = list(service.command)
    if service.args:
        container["args"] = list(service.args)
    if service.has_disk:
        container["volumeMounts"] = [{"name": DATA_VOLUME, "mountPath": DATA_MOUNT_PATH}]
    return container


def render_deployment(service: Service) -> dict[str, Any]:
    cluster = service.environment.cluster
    template_annotations = {}
    if service.redeployed_at is not None:
        template_annotations[REDEPLOYED_AT_ANNOTATION] = service.redeployed_at.isoformat()
    pod_spec: dict[str, Any] = {
        "containers": [_container(service)],
        # Service links would add FOO_PORT-style variables for every service of the namespace,
        # clashing with the user's own; services find each other by DNS name instead.
        "enableServiceLinks": False,
        # Tenant code has no business with the Kubernetes API.
        "automountServiceAccountToken": False,
    }
    if service.is_spot:
        if cluster.spot_node_selector:
            pod_spec["nodeSelector"] = dict(cluster.spot_node_selector)
        if cluster.spot_tolerations:
            pod_spec["tolerations"] = [dict(toleration) for toleration in cluster.spot_tolerations]
    if service.has_disk:
        pod_spec["volumes"] = [{"name": DATA_VOLUME, "persistentVolumeClaim": {"claimName": service.name}}]
        # A ReadWriteOnce volume attaches to one node: a surge pod elsewhere would wait on it
        # forever, and two processes writing one database's files is worse. The old pod goes first.
        strategy: dict[str, Any] = {"type": "Recreate"}
    else:
        # A new pod must be ready before an old one goes: no gap in service on a deploy.
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}
    template_metadata: dict[str, Any] = {"labels": service.labels}
    if template_annotations:
        template_metadata["annotations"] = template_annotations
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        # The generation the watcher compares with the database to know which spec it sees.
        "metadata": _metadata(service, annotations={GENERATION_ANNOTATION: str(service.generation)}),
        "spec": {
            "replicas": service.desired_replicas,
            "selector": {"matchLabels": _selector(service)},
            "strategy": strategy,
            "template": {"metadata": template_metadata, "spec": pod_spec},
        },
    }


def render_claim(service: Service) -> dict[str, Any] | None:
    """The PersistentVolumeClaim of the service's disk; None when it has none.

    `storageClassName` is left out unless the cluster names one, so that the cluster's default
    StorageClass provisions it. Only the requested size ever changes afterwards: a larger one
    asks the cluster to expand the volume (a claim cannot shrink, and the form refuses it).
    """
    if not service.has_disk:
        return None
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{service.disk_mib}Mi"}},
    }
    storage_class = service.environment.cluster.storage_class
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": _metadata(service), "spec": spec}


def render_cluster_service(service: Service) -> dict[str, Any]:
    """The ClusterIP Service: `name:port` inside the namespace."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(service),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(service),
            "ports": [
                {"name": _port_name(service), "port": service.port, "targetPort": service.port, "protocol": "TCP"}
            ],
        },
    }


def tls_secret_name(service: Service) -> str:
    return f"{service.name}-tls"


def render_ingress(service: Service) -> dict[str, Any] | None:
    """The Ingress for the Access URL and custom domains; None when the service has no host.

    `ingressClassName` is left out so that the cluster's default class serves it. With
    cert-manager (`Cluster.tls`), the annotation asks the cluster's issuer for one certificate
    covering every host, kept in the Secret the `tls` section names; cert-manager renews it.
    """
    hosts = service.hosts
    if not hosts:
        return None
    backend = {"service": {"name": service.name, "port": {"number": service.port}}}
    spec: dict[str, Any] = {
        "rules": [
            {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            for host in hosts
        ]
    }
    extra: dict[str, Any] = {}
    cluster = service.environment.cluster
    if cluster.tls == cluster.Tls.CERT_MANAGER and cluster.tls_issuer:
        extra["annotations"] = {"cert-manager.io/cluster-issuer": cluster.tls_issuer}
        spec["tls"] = [{"hosts": hosts, "secretName": tls_secret_name(service)}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(service, **extra),
        "spec": spec,
    }


def render_service(service: Service) -> list[dict[str, Any]]:
    """Every object the service needs now, in the order to apply them: the claim before the
    Deployment whose pods mount it."""
    manifests = []
    claim = render_claim(service)
    if claim is not None:
        manifests.append(claim)
    manifests += [render_deployment(service), render_cluster_service(service)]
    ingress = render_ingress(service)
    if ingress is not None:
        manifests.append(ingress)
    return manifests


# --- builds --------------------------------------------------------------------------------------

JOB = ("batch/v1", "Job")
BUILD_CONTAINER = "builder"
# Where kaniko reads registry credentials (a Docker config.json).
KANIKO_DOCKER_CONFIG = "/kaniko/.docker"
REGISTRY_VOLUME = "registry-credentials"
# A finished build Job is removed by ale when it falls out of the last builds kept; this is the
# cluster's own backstop for a Job ale forgot (a service deleted while its build ran).
BUILD_JOB_TTL_SECONDS = 7 * 24 * 3600


def git_context(repository_url: str, branch: str) -> str:
    """kaniko's Git build context: `git://<host>/<path>#refs/heads/<branch>` (it clones over
    https whatever the scheme says; credentials come from GIT_USERNAME / GIT_PASSWORD)."""
    address = repository_url.strip()
    for scheme in ("https://", "http://", "git://", "ssh://"):
        if address.startswith(scheme):
            address = address[len(scheme) :]
            break
    return f"git://{address}#refs/heads/{branch}"


def build_pod_labels(build: Build) -> dict[str, str]:
    """The build pod's labels: the environment's and the build's, but not `ale.dev/service`, so
    that a build pod is never mistaken for one of the service's running pods (its status, its
    running logs, its terminal)."""
    labels = environment_labels(build.service.environment)
    return {**labels, "app.kubernetes.io/component": "build", BUILD_LABEL: build.public_id}


def render_build_job(build: Build) -> dict[str, Any]:
    """The Job that builds and pushes `build.image` from the service's repository with kaniko."""
    service = build.service
    cluster = service.environment.cluster
    args = [
        f"--context={git_context(build.repository_url, build.branch)}",
        f"--dockerfile={service.dockerfile or 'Dockerfile'}",
        f"--destination={build.image}",
        # Layers cached in the registry beside the image: a rebuild of an unchanged dependency
        # layer is a pull, not a reinstall.
        "--cache=true",
        f"--cache-repo={build.image.rsplit(':', 1)[0]}/cache",
        # The pushed digest as the container's termination message.
        "--digest-file=/dev/termination-log",
    ]
    if service.repository_path.strip("/"):
        args.append(f"--context-sub-path={service.repository_path.strip('/')}")
    args += [f"--build-arg={arg['name']}={arg.get('value', '')}" for arg in service.build_args]
    env: list[dict[str, Any]] = []
    if service.git_token_secret:
        token = {"secretKeyRef": {"name": ENV_SECRET, "key": service.git_token_secret, "optional": False}}
        # GIT_TOKEN for Dockerfiles and scripts that expect it; kaniko itself clones with
        # GIT_USERNAME / GIT_PASSWORD, and hosts accept a token as the password of any user.
        env = [
            {"name": "GIT_TOKEN", "valueFrom": token},
            {"name": "GIT_USERNAME", "value": "oauth2"},
            {"name": "GIT_PASSWORD", "valueFrom": token},
        ]
    quantities = {"cpu": f"{cluster.build_cpu_millicores}m", "memory": f"{cluster.build_memory_mib}Mi"}
    container: dict[str, Any] = {
        "name": BUILD_CONTAINER,
        "image": cluster.builder_image,
        "args": args,
        "env": env,
        "resources": {"requests": dict(quantities), "limits": dict(quantities)},
    }
    pod_spec: dict[str, Any] = {
        "containers": [container],
        # One attempt: a failed build is reported, not silently retried from a moved branch.
        "restartPolicy": "Never",
        "enableServiceLinks": False,
        "automountServiceAccountToken": False,
    }
    if cluster.registry_secret:
        container["volumeMounts"] = [{"name": REGISTRY_VOLUME, "mountPath": KANIKO_DOCKER_CONFIG, "readOnly": True}]
        pod_spec["volumes"] = [
            {
                "name": REGISTRY_VOLUME,
                "secret": {
                    "secretName": cluster.registry_secret,
                    "items": [{"key": ".dockerconfigjson", "path": "config.json"}],
                },
            }
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": build.job_name,
            "namespace": service.namespace,
            "labels": {**service.labels, "app.kubernetes.io/component": "build", BUILD_LABEL: build.public_id},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": cluster.build_deadline_seconds,
            "ttlSecondsAfterFinished": BUILD_JOB_TTL_SECONDS,
            "template": {"metadata": {"labels": build_pod_labels(build)}, "spec": pod_spec},
        },
    }
