"""`manage.py register_cluster`: "this cluster" for the migration Job, and kubeconfig clusters."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from clusters.client import client_for
from clusters.errors import ClusterError
from clusters.models import Cluster

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: abc}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


@pytest.mark.django_db
def test_it_registers_this_cluster_with_the_service_account():
    call_command("register_cluster", "--in-cluster", "--name", "this", "--ingress-domain", "apps.example.com")
    cluster = Cluster.objects.get(name="this")
    assert cluster.connection == Cluster.Connection.IN_CLUSTER
    assert cluster.ingress_domain == "apps.example.com"
    assert cluster.kubeconfig == ""
    # Outside a pod the service account is missing, and the client says so plainly.
    with pytest.raises(ClusterError) as error:
        client_for(cluster)
    assert not error.value.retryable
    assert "not running inside it" in error.value.user_message


@pytest.mark.django_db
def test_it_is_idempotent_and_keeps_what_is_not_given():
    call_command("register_cluster", "--in-cluster", "--name", "this", "--ingress-domain", "apps.example.com",
                 "--external-host", "lb.example.com")
    call_command("register_cluster", "--in-cluster", "--name", "this", "--display-name", "This cluster")
    cluster = Cluster.objects.get(name="this")
    assert Cluster.objects.filter(name="this").count() == 1
    assert cluster.display_name == "This cluster"
    assert cluster.ingress_domain == "apps.example.com"
    assert cluster.external_host == "lb.example.com"


@pytest.mark.django_db
def test_it_registers_a_kubeconfig(tmp_path):
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    call_command("register_cluster", "--name", "prod", "--kubeconfig", str(path), "--context", "x")
    cluster = Cluster.objects.get(name="prod")
    assert cluster.connection == Cluster.Connection.KUBECONFIG
    assert cluster.kubeconfig == KUBECONFIG
    assert client_for(cluster).configuration.host == "https://127.0.0.1:6443"


@pytest.mark.django_db
def test_it_refuses_a_bad_name_and_a_missing_file(tmp_path):
    with pytest.raises(CommandError):
        call_command("register_cluster", "--in-cluster", "--name", "not a slug")
    with pytest.raises(CommandError):
        call_command("register_cluster", "--name", "prod", "--kubeconfig", str(tmp_path / "missing"))
    assert not Cluster.objects.filter(name__in=["not a slug", "prod"]).exists()


@pytest.mark.django_db
def test_it_registers_how_the_cluster_serves_https_and_refuses_half_of_it():
    call_command("register_cluster", "--in-cluster", "--name", "this", "--tls", "cert_manager",
                 "--tls-issuer", "letsencrypt-prod", "--ingress-controller-namespace", "kube-system",
                 "--storage-class", "fast-ssd")
    cluster = Cluster.objects.get(name="this")
    assert (cluster.tls, cluster.tls_issuer) == (Cluster.Tls.CERT_MANAGER, "letsencrypt-prod")
    assert (cluster.ingress_controller_namespace, cluster.storage_class) == ("kube-system", "fast-ssd")

    with pytest.raises(CommandError, match="ClusterIssuer"):
        call_command("register_cluster", "--in-cluster", "--name", "other", "--tls", "cert_manager")
    assert not Cluster.objects.filter(name="other").exists()


@pytest.mark.django_db
def test_it_points_the_bundled_cluster_at_its_ingress_port_and_can_clear_it():
    call_command("register_cluster", "--devcluster", "--name", "local", "--ingress-domain", "localhost",
                 "--access-port", "18081")
    cluster = Cluster.objects.get(name="local")
    assert (cluster.connection, cluster.ingress_domain, cluster.access_port) == ("devcluster", "localhost", 18081)
    call_command("register_cluster", "--devcluster", "--name", "local", "--access-port", "0")
    assert Cluster.objects.get(name="local").access_port is None


@pytest.mark.django_db
def test_it_refuses_a_port_out_of_range():
    with pytest.raises(CommandError, match="access_port: Ensure this value is less than or equal to 65535."):
        call_command("register_cluster", "--devcluster", "--name", "local", "--access-port", "70000")
