from tests.fixtures.devcluster import devcluster, kube_api, kubeconfig_path, namespace  # noqa: F401
