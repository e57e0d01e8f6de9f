"""Access reviews (what `kubectl auth can-i` and ale's cluster access check ask) and the 403 of a
refused call. The restricted user may only get, list and watch pods (see `restricted_api`)."""
from __future__ import annotations

import re

from kubernetes import client

from tests.contract.support import api_error


def review(api: client.ApiClient, **attributes: str) -> client.V1SubjectAccessReviewStatus:
    body = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(**attributes)))
    return client.AuthorizationV1Api(api).create_self_subject_access_review(body).status


def test_it_serves_the_access_reviews_in_discovery(kube_api):
    resources = {r.name: r for r in client.AuthorizationV1Api(kube_api).get_api_resources().resources}
    for name, kind in (("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
                       ("selfsubjectrulesreviews", "SelfSubjectRulesReview")):
        assert resources[name].kind == kind and not resources[name].namespaced
        assert resources[name].verbs == ["create"]


def test_it_allows_the_admin_what_ale_does(kube_api, namespace):
    for verb, group, resource in (("create", "apps", "deployments"), ("delete", "", "namespaces"),
                                  ("patch", "networking.k8s.io", "ingresses")):
        status = review(kube_api, verb=verb, group=group, resource=resource)
        assert status.allowed, (verb, group, resource)
    assert review(kube_api, verb="get", resource="pods", subresource="log", namespace=namespace).allowed


def test_it_answers_for_the_restricted_user_from_its_rules(restricted_api, namespace):
    assert review(restricted_api, verb="list", resource="pods", namespace=namespace).allowed
    assert review(restricted_api, verb="watch", resource="pods").allowed
    denied = review(restricted_api, verb="create", group="apps", resource="deployments", namespace=namespace)
    assert denied.allowed is False
    assert review(restricted_api, verb="get", resource="pods", subresource="log", namespace=namespace).allowed is False
    assert review(restricted_api, verb="delete", resource="namespaces").allowed is False
    # Reviewing one's own access is every authenticated user's right.
    assert review(restricted_api, verb="create", group="authorization.k8s.io",
                  resource="selfsubjectaccessreviews").allowed


def test_it_lists_the_restricted_users_rules(restricted_api, namespace):
    body = client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace))
    status = client.AuthorizationV1Api(restricted_api).create_self_subject_rules_review(body).status
    assert status.incomplete is False
    pods = [r for r in status.resource_rules if "pods" in r.resources and "" in r.api_groups]
    assert pods and {"get", "list", "watch"} <= set(pods[0].verbs)
    assert not any("deployments" in r.resources or "*" in r.resources for r in status.resource_rules)
    assert any("/api" in (r.non_resource_urls or []) for r in status.non_resource_rules)


def test_it_refuses_the_restricted_user_with_rbacs_message(restricted_api, namespace):
    apps = client.AppsV1Api(restricted_api)
    code, status = api_error(lambda: apps.list_namespaced_deployment(namespace))
    assert code == 403 and status["reason"] == "Forbidden" and status["code"] == 403
    assert re.fullmatch(rf'deployments\.apps is forbidden: User "[^"]+" cannot list resource "deployments" in API '
                        rf'group "apps" in the namespace "{namespace}"', status["message"]), status["message"]
    assert status["details"] == {"group": "apps", "kind": "deployments"}

    code, status = api_error(lambda: apps.read_namespaced_deployment("web", namespace))
    assert re.fullmatch(rf'deployments\.apps "web" is forbidden: User "[^"]+" cannot get resource "deployments" in '
                        rf'API group "apps" in the namespace "{namespace}"', status["message"]), status["message"]
    assert status["details"] == {"name": "web", "group": "apps", "kind": "deployments"}

    core = client.CoreV1Api(restricted_api)
    code, status = api_error(lambda: core.list_namespace())
    assert code == 403
    assert re.fullmatch(r'namespaces is forbidden: User "[^"]+" cannot list resource "namespaces" in API group "" '
                        r"at the cluster scope", status["message"]), status["message"]

    code, status = api_error(lambda: core.read_namespaced_pod_log("web", namespace))
    assert code == 403
    assert re.fullmatch(rf'pods "web" is forbidden: User "[^"]+" cannot get resource "pods/log" in API group "" in '
                        rf'the namespace "{namespace}"', status["message"]), status["message"]
    # What it may do, it does.
    assert core.list_namespaced_pod(namespace).items == []


def test_it_rejects_a_review_without_attributes(kube_api):
    body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview", "spec": {}}
    code, status = api_error(lambda: client.AuthorizationV1Api(kube_api).create_self_subject_access_review(body))
    assert code == 422 and status["reason"] == "Invalid"
    assert "exactly one of nonResourceAttributes or resourceAttributes must be specified" in status["message"]
