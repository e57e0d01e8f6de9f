"""Emulator-only tests: the CLI, persistence, fault injection."""
from __future__ import annotations

import secrets

import pytest
from kubernetes import client

from tests.fixtures.devcluster import devcluster, devcluster_api, kube_api, kubeconfig_path, namespace  # noqa: F401


@pytest.fixture
def ns(devcluster_api):  # noqa: F811
    """A namespace of its own on the embedded devcluster, deleted afterwards."""
    name = f"emu-{secrets.token_hex(3)}"
    client.CoreV1Api(devcluster_api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(devcluster_api).delete_namespace(name)
