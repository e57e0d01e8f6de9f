"""The labels and annotations ale puts on the objects it creates, and the selectors that find them.

One module owns the names, so that what writes them (the manifests, a service's labels) and what
reads or selects by them (the watcher, the resync, the log viewer, the build pods, the metrics
sampler) cannot drift apart. It is in `clusters/`, the bottom layer, and imports nothing, so every
app may use it. The devcluster, a program of its own, keeps its own copy of what it needs.
"""

from __future__ import annotations

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = {MANAGED_BY_LABEL: "ale"}
MANAGED_BY_SELECTOR = f"{MANAGED_BY_LABEL}=ale"

SPACE_LABEL = "ale.dev/space"
PROJECT_LABEL = "ale.dev/project"
ENVIRONMENT_LABEL = "ale.dev/environment"
# The service's public id, not its name: it never changes and never collides with a user's labels.
SERVICE_LABEL = "ale.dev/service"
# On a build Job and its pod, instead of SERVICE_LABEL (a build pod is not one of the service's pods).
BUILD_LABEL = "ale.dev/build"
# On the LoadBalancer Service that exposes a service's TCP port outside the cluster.
EXTERNAL_LABEL = "ale.dev/external"

# On the Deployment: the generation of the service it was rendered from.
GENERATION_ANNOTATION = "ale.dev/generation"
# On the pod template: a redeploy changes it, so the Deployment rolls out new pods.
REDEPLOYED_AT_ANNOTATION = "ale.dev/redeployed-at"

# Every pod of every service (build pods carry BUILD_LABEL instead of SERVICE_LABEL).
SERVICE_SELECTOR = f"{MANAGED_BY_SELECTOR},{SERVICE_LABEL}"
# The build Jobs: ale's objects that carry a build id.
BUILD_SELECTOR = f"{MANAGED_BY_SELECTOR},{BUILD_LABEL}"
# The LoadBalancer Services of an environment's TCP ports.
EXTERNAL_SELECTOR = f"{EXTERNAL_LABEL}=true"


def selector_for_service(public_id: str) -> str:
    """The pods (and build Jobs) of one service."""
    return f"{SERVICE_LABEL}={public_id}"


def selector_for_build(public_id: str) -> str:
    """The Job and pod of one build."""
    return f"{BUILD_LABEL}={public_id}"
