"""The restricted identity beyond what kubectl shows: discovery, the devcluster's own admin path, tokens."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from devcluster import DevCluster


@pytest.fixture(scope="module")
def dc() -> Iterator[DevCluster]:
    with DevCluster(pod_ready_seconds=0.2, restricted_identity=["get,list:pods", "*:configmaps"]) as cluster:
        yield cluster


def call(dc: DevCluster, method: str, path: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"{dc.url}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_restricted_identity_reads_discovery_and_what_its_rules_grant(dc):
    token = dc.restricted_token
    assert call(dc, "GET", "/apis", token)[0] == 200
    assert call(dc, "GET", "/api/v1", token)[0] == 200
    assert call(dc, "GET", "/api/v1/namespaces/default/pods", token)[0] == 200
    # `*` verbs: everything on configmaps.
    assert call(dc, "POST", "/api/v1/namespaces/default/configmaps", token, {"metadata": {"name": "c"}})[0] == 201
    assert call(dc, "DELETE", "/api/v1/namespaces/default/configmaps", token)[0] == 200
    code, status = call(dc, "DELETE", "/api/v1/namespaces/default/pods", token)
    assert code == 403 and status["message"] == ('pods is forbidden: User "restricted" cannot deletecollection '
                                                 'resource "pods" in API group "" in the namespace "default"')
    code, status = call(dc, "GET", "/api/v1/watch/namespaces/default/pods", token)
    assert code == 403 and 'cannot watch resource "pods"' in status["message"]


def test_the_restricted_identity_may_not_inject_faults_and_a_wrong_token_is_401(dc):
    code, status = call(dc, "POST", "/_devcluster/faults", dc.restricted_token, {"action": "drop_watches"})
    assert code == 403 and status["message"] == 'forbidden: User "restricted" cannot post path "/_devcluster/faults"'
    assert call(dc, "GET", "/api/v1/namespaces", "wrong")[0] == 401
    assert call(dc, "GET", "/_devcluster/faults", dc.token)[0] == 200


def test_an_access_review_names_exactly_one_kind_of_attributes(dc):
    both = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {
        "resourceAttributes": {"verb": "get", "resource": "pods"},
        "nonResourceAttributes": {"verb": "get", "path": "/api"}}}
    code, status = call(dc, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", dc.token, both)
    assert code == 422
    assert status["message"] == ('SelfSubjectAccessReview.authorization.k8s.io "" is invalid: spec.nonResourceAttributes: '
                                 'Invalid value: {"verb":"get","path":"/api"}: cannot be specified in combination with '
                                 "resourceAttributes")
    non_resource = {**both, "spec": {"nonResourceAttributes": {"verb": "get", "path": "/healthz"}}}
    code, review = call(dc, "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", dc.restricted_token,
                        non_resource)
    assert code == 201 and review["status"]["allowed"] is True
