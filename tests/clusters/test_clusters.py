from __future__ import annotations

import pytest
from django.db.models import ProtectedError
from django.urls import reverse

from clusters.models import Cluster
from tests.factories import local_cluster


def test_it_seeds_the_local_devcluster(db):
    cluster = Cluster.objects.get(name="local")
    assert cluster.connection == "devcluster"
    assert cluster.ingress_domain == "localtest.me"
    assert cluster.external_host == "127.0.0.1"
    assert cluster.spot_node_selector == {"ale.dev/capacity": "spot"}
    assert cluster.spot_tolerations == [
        {"key": "ale.dev/capacity", "operator": "Equal", "value": "spot", "effect": "NoSchedule"}
    ]
    assert Cluster.default() == cluster


def test_it_protects_a_cluster_that_has_environments(main_env):
    with pytest.raises(ProtectedError):
        main_env.cluster.delete()


@pytest.fixture
def admin_client_(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)
    return client


def test_it_never_shows_a_stored_kubeconfig_in_the_admin(admin_client_):
    cluster = Cluster.objects.create(name="prod", connection="kubeconfig", kubeconfig="apiVersion: v1\nsecret-token-xyz")
    response = admin_client_.get(reverse("admin:clusters_cluster_change", args=[cluster.pk]))
    assert response.status_code == 200
    assert "secret-token-xyz" not in response.content.decode()
    listing = admin_client_.get(reverse("admin:clusters_cluster_changelist"))
    assert "secret-token-xyz" not in listing.content.decode()


def test_it_keeps_the_kubeconfig_when_the_admin_form_leaves_it_empty(admin_client_):
    cluster = Cluster.objects.create(name="prod", connection="kubeconfig", kubeconfig="kept")
    data = {
        "name": "prod", "display_name": "Production", "connection": "kubeconfig", "kubeconfig": "", "context": "",
        "ingress_domain": "apps.example.com", "external_host": "", "external_service_type": "NodePort",
        "spot_node_selector": "{}", "spot_tolerations": "[]",
        "builder_image": "gcr.io/kaniko-project/executor:v1.23.2", "registry": "", "registry_secret": "",
        "build_cpu_millicores": "1000", "build_memory_mib": "2048", "build_deadline_seconds": "1800", "tls": "none",
    }
    response = admin_client_.post(reverse("admin:clusters_cluster_change", args=[cluster.pk]), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    cluster.refresh_from_db()
    assert cluster.kubeconfig == "kept"
    assert cluster.display_name == "Production"


def test_it_lists_every_model_in_the_admin(admin_client_, main_env):
    for name in ("spaces_space", "spaces_membership", "spaces_project", "environments_environment", "clusters_cluster"):
        response = admin_client_.get(reverse(f"admin:{name}_changelist") + "?q=a")
        assert response.status_code == 200, name


def test_it_leaves_the_storage_class_to_the_cluster_by_default(db):
    assert Cluster.objects.get(name="local").storage_class == ""


@pytest.mark.parametrize("name", ["standard", "fast-ssd", "ebs.gp3", ""])
def test_it_takes_a_storage_class_name(db, name):
    Cluster(name="prod", connection="kubeconfig", storage_class=name).full_clean()


@pytest.mark.parametrize("name", ["Fast", "fast_ssd", "-fast", "fast-", "fast..ssd", "a" * 254])
def test_it_refuses_what_is_not_a_storage_class_name(db, name):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        Cluster(name="prod", connection="kubeconfig", storage_class=name).full_clean()
    assert "storage_class" in info.value.message_dict


def test_it_shows_the_storage_class_in_the_admin(admin_client_):
    cluster = Cluster.objects.get(name="local")
    html = admin_client_.get(reverse("admin:clusters_cluster_change", args=[cluster.pk])).content.decode()
    assert 'name="storage_class"' in html
    assert "Blank: the cluster&#x27;s default StorageClass" in html or "Blank: the cluster's default StorageClass" in html


def test_it_shows_every_help_text_of_the_cluster_form_whole(admin_client_):
    cluster = Cluster.objects.get(name="local")
    page = admin_client_.get(reverse("admin:clusters_cluster_change", args=[cluster.pk])).content.decode()
    # Help texts are HTML there: a placeholder in angle brackets would vanish as a tag.
    assert "Access URLs are SERVICE-ENVIRONMENT_ID.THIS_DOMAIN." in page
    assert "images are REGISTRY/ENVIRONMENT_ID/SERVICE:TAG." in page
    for field in Cluster._meta.get_fields():
        assert "<" not in str(getattr(field, "help_text", "")), field.name
