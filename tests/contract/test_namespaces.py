from __future__ import annotations

import secrets

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.contract.support import wait_for


def _gone(read) -> bool:
    try:
        read()
    except ApiException as exc:
        return exc.status == 404
    return False


def test_it_creates_namespaces_and_lists_them_by_label(kube_api):
    core = client.CoreV1Api(kube_api)
    marker = secrets.token_hex(4)
    names = [f"ale-test-{marker}-{i}" for i in range(2)]
    try:
        for name in names:
            created = core.create_namespace({"metadata": {"name": name, "labels": {"ale.test/batch": marker}}})
            assert created.status.phase == "Active"
            assert created.metadata.labels["kubernetes.io/metadata.name"] == name
        listed = core.list_namespace(label_selector=f"ale.test/batch={marker}")
        assert sorted(ns.metadata.name for ns in listed.items) == names
    finally:
        for name in names:
            core.delete_namespace(name)


def test_it_deletes_a_namespace_with_everything_in_it(kube_api):
    core = client.CoreV1Api(kube_api)
    name = f"ale-test-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "settings"}, "data": {"a": "1"}})
    core.create_namespaced_secret(name, {"metadata": {"name": "ale-env"}, "stringData": {"KEY": "v"}})
    answer = core.delete_namespace(name)
    assert answer["status"]["phase"] == "Terminating"
    wait_for(lambda: _gone(lambda: core.read_namespace(name)), timeout=90, message="namespace removal")
    with pytest.raises(ApiException) as info:
        core.read_namespaced_config_map("settings", name)
    assert info.value.status == 404


def test_it_refuses_new_objects_in_a_terminating_namespace(kube_api):
    core = client.CoreV1Api(kube_api)
    name = f"ale-test-{secrets.token_hex(4)}"
    core.create_namespace({"metadata": {"name": name}})
    # A finalizer holds the namespace in Terminating until we let go of it.
    core.create_namespaced_config_map(name, {"metadata": {"name": "held", "finalizers": ["ale.test/hold"]}})
    core.delete_namespace(name)
    try:
        with pytest.raises(ApiException) as info:
            core.create_namespaced_config_map(name, {"metadata": {"name": "late"}})
        assert info.value.status == 403
        assert "because it is being terminated" in info.value.body
    finally:
        core.patch_namespaced_config_map("held", name, {"metadata": {"finalizers": None}})
    wait_for(lambda: _gone(lambda: core.read_namespace(name)), timeout=90, message="namespace removal")
