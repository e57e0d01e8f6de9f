"""Emulator-only tests: the CLI, persistence, fault injection."""
from tests.fixtures.devcluster import devcluster, devcluster_api, kube_api, kubeconfig_path, namespace  # noqa: F401
