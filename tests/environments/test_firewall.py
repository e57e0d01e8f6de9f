"""Firewall Settings: manifests and NetworkPolicies for off, on and an allow-list; the
confirmation; the external Services on the devcluster with the node port recorded."""

from __future__ import annotations

import pytest
from django.urls import reverse

from clusters.client import client_for
from clusters.models import Cluster
from environments import actions
from environments.manifests import EXTERNAL_POLICY, external_service_name, render_environment, render_external_access
from environments.tasks import reconcile_environment
from services.models import Service
from spaces.actions import create_project
from tests.environments.travel import enqueued, make_service
from tests.fixtures.clusters import kube_cluster  # noqa: F401
from tests.fixtures.devcluster import kubeconfig_path  # noqa: F401

pytestmark = pytest.mark.django_db


def open_firewall(environment, user, cidrs=()):
    return actions.set_firewall(acting_user=user, environment=environment, allow=True, cidrs=list(cidrs), confirmed=True)


@pytest.fixture
def db_service(main_env, owner):
    return make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432")


def test_it_renders_nothing_external_when_off(main_env, owner, db_service):
    assert render_external_access(main_env, [db_service]) == []
    # The isolation policy stays: same-namespace traffic and the ingress controller only.
    policy = render_environment(main_env)[1]
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {"podSelector": {}},
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}},
            ]
        }
    ]


def test_it_admits_all_sources_to_tcp_services_when_on(main_env, owner, db_service):
    main_env = open_firewall(main_env, owner)
    policy, service = render_external_access(main_env, [db_service])
    assert policy["metadata"]["name"] == EXTERNAL_POLICY == "ale-external-tcp"
    assert policy["spec"]["podSelector"] == {
        "matchExpressions": [{"key": "ale.dev/service", "operator": "In", "values": [db_service.public_id]}]
    }
    assert policy["spec"]["ingress"] == [{"ports": [{"protocol": "TCP", "port": 5432}]}]
    assert service["metadata"]["name"] == "db-external"
    assert service["spec"] == {
        "type": "NodePort",
        "selector": {"ale.dev/service": db_service.public_id},
        "ports": [{"name": "tcp", "port": 5432, "targetPort": 5432, "protocol": "TCP"}],
    }


def test_it_restricts_to_the_allow_list_with_ip_blocks_and_source_ranges(main_env, owner, db_service):
    Cluster.objects.filter(pk=main_env.cluster_id).update(external_service_type="LoadBalancer")
    main_env.cluster.refresh_from_db()
    main_env = open_firewall(main_env, owner, ["203.0.113.7/24", "2001:db8::1/32"])
    assert main_env.external_allow_cidrs == ["203.0.113.0/24", "2001:db8::/32"]
    policy, service = render_external_access(main_env, [db_service])
    assert policy["spec"]["ingress"][0]["from"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}, {"ipBlock": {"cidr": "2001:db8::/32"}}]
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["loadBalancerSourceRanges"] == ["203.0.113.0/24", "2001:db8::/32"]


def test_it_keeps_external_names_one_dns_label():
    service = Service(name="a" * 63)
    name = external_service_name(service)
    assert len(name) <= 63 and name.endswith("-external")


def test_it_requires_the_confirmation_to_open(owner_client, main_env, htmx_headers):
    url = reverse("environments:firewall", args=[main_env.public_id])
    body = owner_client.post(url, {"allow_external_tcp": "on"}, headers=htmx_headers).content.decode()
    assert "opens this environment to all IP addresses: tick the box to confirm." in body
    main_env.refresh_from_db()
    assert main_env.allow_external_tcp is False
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        actions.set_firewall(acting_user=None, environment=main_env, allow=True, cidrs=[], confirmed=False)


def test_it_opens_with_the_confirmation_and_closes_without_one(owner_client, main_env, htmx_headers, django_capture_on_commit_callbacks):
    url = reverse("environments:firewall", args=[main_env.public_id])
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        body = owner_client.post(
            url, {"allow_external_tcp": "on", "confirm": "on", "allow_cidrs": "10.0.0.0/8, 192.168.1.0/24"}, headers=htmx_headers
        ).content.decode()
    assert "External TCP connections are allowed from 10.0.0.0/8, 192.168.1.0/24." in body
    assert enqueued(callbacks) == [("environments.tasks.reconcile_environment", (main_env.pk,))]
    main_env.refresh_from_db()
    assert (main_env.allow_external_tcp, main_env.external_allow_cidrs) == (True, ["10.0.0.0/8", "192.168.1.0/24"])
    body = owner_client.post(url, {}, headers=htmx_headers).content.decode()
    assert "External TCP connections are blocked." in body
    main_env.refresh_from_db()
    assert main_env.allow_external_tcp is False


def test_it_refuses_an_invalid_cidr(owner_client, main_env, htmx_headers):
    url = reverse("environments:firewall", args=[main_env.public_id])
    body = owner_client.post(url, {"allow_external_tcp": "on", "confirm": "on", "allow_cidrs": "10.0.0.0/33"}, headers=htmx_headers).content.decode()
    assert "“10.0.0.0/33” is not an IP address range" in body
    main_env.refresh_from_db()
    assert main_env.allow_external_tcp is False


def test_it_shows_the_warning_on_the_settings_tab(member_client, main_env):
    body = member_client.get(reverse("environments:settings", args=[main_env.public_id])).content.decode()
    assert "Firewall Settings" in body
    assert "When enabled, this allows access from all IP addresses - configure with caution." in body


def test_it_enqueues_the_environment_reconcile_for_a_new_tcp_service_when_open(main_env, owner, django_capture_on_commit_callbacks):
    open_firewall(main_env, owner)
    main_env.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        service = make_service(main_env, owner, name="cache", kind="tcp", image="redis:7", port="6379")
    assert ("environments.tasks.reconcile_environment", (main_env.pk,)) in enqueued(callbacks)
    assert ("services.tasks.reconcile_service", (service.pk, 1)) in enqueued(callbacks)


def test_it_applies_external_services_records_node_ports_and_removes_them(kube_cluster, space, owner, member_client):
    Cluster.objects.filter(pk=kube_cluster.pk).update(external_host="203.0.113.10")
    environment = create_project(acting_user=owner, space=space, name="fw", display_name="", cluster=kube_cluster).environments.get()
    db = make_service(environment, owner, name="db", kind="tcp", image="postgres:16", port="5432")
    make_service(environment, owner, name="web", image="nginx:1.27", port="80")
    open_firewall(environment, owner)
    assert reconcile_environment.apply(args=[environment.pk]).get() == "applied"
    kube = client_for(kube_cluster)
    external = kube.get("v1", "Service", "db-external", environment.namespace)
    node_port = external["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767
    assert kube.get("networking.k8s.io/v1", "NetworkPolicy", EXTERNAL_POLICY, environment.namespace) is not None
    assert kube.get("v1", "Service", "web-external", environment.namespace) is None
    db.refresh_from_db()
    assert db.external_node_port == node_port
    body = member_client.get(reverse("environments:settings", args=[environment.public_id])).content.decode()
    assert f'data-copy="203.0.113.10:{node_port}"' in body

    actions.set_firewall(acting_user=owner, environment=environment, allow=False, cidrs=[], confirmed=False)
    reconcile_environment.apply(args=[environment.pk]).get()
    assert kube.get("v1", "Service", "db-external", environment.namespace) is None
    assert kube.get("networking.k8s.io/v1", "NetworkPolicy", EXTERNAL_POLICY, environment.namespace) is None
    db.refresh_from_db()
    assert db.external_node_port is None
