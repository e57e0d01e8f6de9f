"""Where a web service's Access link points, and what its card says when the link may not open."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.urls import reverse

from clusters.models import Cluster
from tests.services.test_views import make_service

pytestmark = pytest.mark.django_db


def env_page(client, environment) -> str:
    response = client.get(reverse("environments:detail", args=[environment.public_id]))
    assert response.status_code == 200
    return response.content.decode()


def set_cluster(environment, **fields) -> Cluster:
    cluster = environment.cluster
    for field, value in fields.items():
        setattr(cluster, field, value)
    cluster.save()
    return cluster


def test_it_points_the_bundled_cluster_at_its_emulated_ingress(member_client, owner, main_env):
    # What `make run` does once the devcluster listens: a Cluster setting, no special case.
    call_command(
        "register_cluster", "--name", main_env.cluster.name, "--devcluster", "--ingress-domain", "localhost",
        "--access-port", "18080",
    )
    service = make_service(main_env, owner, name="web")
    html = env_page(member_client, main_env)
    url = f"http://web-{main_env.public_id}.localhost:18080"
    assert f'href="{url}" target="_blank" rel="noopener">Access</a>' in html
    assert 'data-role="access-hint"' not in html
    assert service.access_url == url


def test_a_domain_that_resolves_to_loopback_says_why_the_link_may_fail(member_client, owner, main_env):
    set_cluster(main_env, connection=Cluster.Connection.KUBECONFIG, ingress_domain="localtest.me")
    make_service(main_env, owner, name="web")
    html = env_page(member_client, main_env)
    assert f'href="http://web-{main_env.public_id}.localtest.me"' in html
    assert (
        '<p class="service-card-hint muted" data-role="access-hint">*.localtest.me resolves to 127.0.0.1: the Access '
        "link opens only on a computer whose port 80 reaches the cluster&#x27;s ingress.</p>"
    ) in html


@pytest.mark.parametrize("domain", ["apps.corp.internal", "k8s.local", "cluster.lan"])
def test_a_private_domain_says_the_link_opens_only_where_its_dns_resolves(member_client, owner, main_env, domain):
    set_cluster(main_env, connection=Cluster.Connection.KUBECONFIG, ingress_domain=domain)
    make_service(main_env, owner, name="web")
    html = env_page(member_client, main_env)
    assert f"{domain} is not a public domain: the Access link opens only where its DNS resolves it." in html


def test_a_cluster_without_ingress_domain_says_there_is_no_link(member_client, owner, main_env):
    set_cluster(main_env, connection=Cluster.Connection.KUBECONFIG, ingress_domain="")
    make_service(main_env, owner, name="web")
    html = env_page(member_client, main_env)
    assert ">Access</a>" not in html
    assert "This cluster has no ingress domain, so web services get no Access link." in html


def test_a_public_domain_and_a_tcp_service_get_no_hint(member_client, owner, main_env):
    set_cluster(main_env, connection=Cluster.Connection.KUBECONFIG, ingress_domain="apps.example.com", access_port=None)
    make_service(main_env, owner, name="web")
    make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432")
    html = env_page(member_client, main_env)
    assert f'href="http://web-{main_env.public_id}.apps.example.com"' in html
    assert 'data-role="access-hint"' not in html


def test_the_hint_is_not_shown_to_an_outsider(client, outsider, owner, main_env):
    set_cluster(main_env, connection=Cluster.Connection.KUBECONFIG, ingress_domain="localtest.me")
    make_service(main_env, owner, name="web")
    client.force_login(outsider)
    assert client.get(reverse("environments:detail", args=[main_env.public_id])).status_code == 404
