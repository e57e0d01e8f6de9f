"""Contract tests: every Kubernetes operation ale uses, through the official client only."""
from tests.fixtures.devcluster import (  # noqa: F401
    devcluster,
    devcluster_api,
    kube_api,
    kubeconfig_path,
    namespace,
    restricted_api,
)
