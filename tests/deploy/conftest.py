from tests.fixtures.clusters import kube_cluster  # noqa: F401
from tests.fixtures.devcluster import devcluster, kube_api, kubeconfig_path, namespace  # noqa: F401
