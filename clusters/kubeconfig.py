"""A cluster's connection (a kubeconfig, or ale's own service account) as the official client's
`Configuration`, with the pool size and timeouts of the settings."""

from __future__ import annotations

import builtins
import hashlib
import os
from typing import TYPE_CHECKING

import yaml
from django.conf import settings
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config.config_exception import ConfigException

from clusters.errors import ClusterError

if TYPE_CHECKING:
    from clusters.models import Cluster

DEFAULT_POOL_SIZE = 16
DEFAULT_REQUEST_TIMEOUT = (5.0, 30.0)


def tune(configuration: k8s.Configuration, pool_size: int) -> k8s.Configuration:
    configuration.connection_pool_maxsize = pool_size
    # Errors must surface once: the caller (a Celery retry, the watcher's backoff) decides when
    # to try again, with jitter and a cap that urllib3's own retries would multiply.
    configuration.retries = False
    configuration.client_go_retries = False
    return configuration


def configuration_from_kubeconfig(
    kubeconfig: str | dict, *, context: str | None = None, base_path: str | None = None
) -> k8s.Configuration:
    """A client `Configuration` from kubeconfig YAML text (or its parsed dict).

    `base_path` resolves relative certificate paths (the kubeconfig file's directory). Raises a
    permanent `ClusterError` when the kubeconfig cannot be used.
    """
    try:
        data = yaml.safe_load(kubeconfig) if isinstance(kubeconfig, str) else kubeconfig
        if not isinstance(data, dict):
            raise ConfigException("the kubeconfig is not a YAML mapping")
        configuration = k8s.Configuration()
        loader = k8s_config.kube_config.KubeConfigLoader(
            config_dict=data,
            active_context=context or None,
            config_base_path=base_path or "",
        )
        loader.load_and_set(configuration)
        if "expiry" not in loader.__dict__:
            # The token does not expire: the loader's hook would only set the same settings again
            # before every request, re-reading the proxy environment each time (a third of the
            # client's CPU per request). A token that expires keeps its hook, which renews it.
            configuration.refresh_api_key_hook = None
    except (yaml.YAMLError, ConfigException, KeyError, TypeError, ValueError) as exc:
        raise ClusterError(
            f"invalid kubeconfig: {exc}",
            retryable=False,
            reason="InvalidConfiguration",
            user_message=f"The cluster's kubeconfig cannot be used: {exc}",
        ) from exc
    return configuration


def settings_knobs() -> tuple[int, tuple[float, float]]:
    pool_size = int(getattr(settings, "KUBE_POOL_SIZE", DEFAULT_POOL_SIZE))
    timeout = getattr(settings, "KUBE_REQUEST_TIMEOUT", DEFAULT_REQUEST_TIMEOUT)
    if isinstance(timeout, (int, float)):
        timeout = (float(timeout), float(timeout))
    connect, read = timeout
    return pool_size, (float(connect), float(read))


def cluster_label(cluster: Cluster) -> str:
    return getattr(cluster, "label", None) or cluster.name


def configuration_fingerprint(cluster: Cluster) -> str:
    """What the client for `cluster` is built from; a change means a new client."""
    pool_size, timeout = settings_knobs()
    parts: builtins.list[str] = [cluster.connection, cluster_label(cluster), str(pool_size), repr(timeout)]
    if cluster.connection == "devcluster":
        path = str(settings.DEVCLUSTER_KUBECONFIG)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            parts.append(f"{path}:missing")
        else:
            # `make run` rewrites the file with a new port each start: follow it.
            parts.append(f"{path}:{stat.st_mtime_ns}:{stat.st_size}:{stat.st_ino}")
    elif cluster.connection == "kubeconfig":
        parts += [cluster.context or "", cluster.kubeconfig or ""]
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def configuration_for(cluster: Cluster) -> k8s.Configuration:
    label = cluster_label(cluster)
    if cluster.connection == "devcluster":
        path = str(settings.DEVCLUSTER_KUBECONFIG)
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError as exc:
            # The devcluster writes this file when it starts: until then it is just not up.
            raise ClusterError(
                f"devcluster kubeconfig {path} does not exist",
                retryable=True,
                reason="Unreachable",
                user_message=f"The cluster '{label}' cannot be reached.",
            ) from exc
        return configuration_from_kubeconfig(text, context=cluster.context or None, base_path=os.path.dirname(path))
    if cluster.connection == "kubeconfig":
        return configuration_from_kubeconfig(cluster.kubeconfig, context=cluster.context or None)
    if cluster.connection == "in_cluster":
        configuration = k8s.Configuration()
        try:
            # Installs a hook that re-reads the projected service-account token as it rotates.
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as exc:
            raise ClusterError(
                f"in-cluster configuration unavailable: {exc}",
                retryable=False,
                reason="InvalidConfiguration",
                user_message=f"The cluster '{label}' is set to use ale's service account, but ale is not running inside it.",
            ) from exc
        return configuration
    raise ValueError(f"unknown cluster connection {cluster.connection!r}")
