"""`python -m devcluster --no-metrics-api`: a cluster without metrics-server, as the official client and
kubectl see it (over TLS: kubectl sends no token over plain http)."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.fixtures.devcluster import start_devcluster_process, stop_process

KUBECTL = Path("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")


@pytest.fixture(scope="module")
def bare(tmp_path_factory) -> Iterator[Path]:
    proc, kubeconfig = start_devcluster_process(tmp_path_factory.mktemp("bare"), "--tls", "--no-metrics-api")
    try:
        yield kubeconfig
    finally:
        stop_process(proc)


def test_it_lists_no_metrics_group_and_answers_404(bare: Path):
    api = config.new_client_from_config(config_file=str(bare))
    try:
        groups = {group.name for group in client.ApisApi(api).get_api_versions().groups}
        assert "metrics.k8s.io" not in groups and "apps" in groups
        with pytest.raises(client.ApiException) as raised:
            client.CustomObjectsApi(api).list_cluster_custom_object("metrics.k8s.io", "v1beta1", "pods")
        assert raised.value.status == 404
    finally:
        api.close()


def test_kubectl_top_says_the_metrics_api_is_not_available(bare: Path):
    result = subprocess.run([str(KUBECTL), "--kubeconfig", str(bare), "top", "pods", "-A"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "Metrics API not available" in result.stderr
