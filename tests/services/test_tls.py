"""https for Access URLs and custom domains: what each of the cluster's TLS settings renders,
links to and leaves behind."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from clusters.client import client_for
from clusters.models import Cluster
from services import actions
from services.manifests import render_service
from services.models import Service
from services.tasks import reconcile_service
from spaces.actions import create_project
from tests.services.test_manifests import by_kind, make_service
from tests.services.test_tasks import deploy

pytestmark = pytest.mark.django_db


def ingress_of(service: Service) -> dict:
    return by_kind(render_service(service))["Ingress"]


def test_it_asks_cert_manager_for_one_certificate_covering_every_host(main_env):
    main_env.cluster.tls, main_env.cluster.tls_issuer = Cluster.Tls.CERT_MANAGER, "letsencrypt-prod"
    web = make_service(main_env, custom_domains=["shop.example.com", "www.shop.example.com"])
    ingress = ingress_of(web)
    assert ingress["metadata"]["annotations"] == {"cert-manager.io/cluster-issuer": "letsencrypt-prod"}
    assert ingress["spec"]["tls"] == [
        {"hosts": [web.generated_host, "shop.example.com", "www.shop.example.com"], "secretName": "api-tls"}
    ]
    assert web.access_url == "https://shop.example.com"
    assert make_service(main_env).access_url == f"https://{make_service(main_env).generated_host}"


def test_it_renders_no_certificate_when_tls_ends_before_the_ingress_but_links_with_https(main_env):
    main_env.cluster.tls = Cluster.Tls.UPSTREAM
    web = make_service(main_env, custom_domains=["shop.example.com"])
    ingress = ingress_of(web)
    assert "tls" not in ingress["spec"] and "annotations" not in ingress["metadata"]
    assert web.access_url == "https://shop.example.com"


def test_it_serves_plain_http_without_tls(main_env):
    assert main_env.cluster.tls == Cluster.Tls.NONE
    web = make_service(main_env, custom_domains=["shop.example.com"])
    assert "tls" not in ingress_of(web)["spec"]
    assert web.access_url == "http://shop.example.com"


def test_it_refuses_cert_manager_without_an_issuer(kube_cluster):
    kube_cluster.tls = Cluster.Tls.CERT_MANAGER
    with pytest.raises(ValidationError) as caught:
        kube_cluster.full_clean()
    assert "ClusterIssuer" in str(caught.value.message_dict["tls_issuer"])
    kube_cluster.tls_issuer = "Not A Name!"
    with pytest.raises(ValidationError) as caught:
        kube_cluster.full_clean()
    assert "tls_issuer" in caught.value.message_dict


def test_it_applies_the_certificate_request_and_deletes_the_certificate_with_the_service(kube_cluster, space, owner):
    kube_cluster.tls, kube_cluster.tls_issuer = Cluster.Tls.CERT_MANAGER, "letsencrypt-prod"
    kube_cluster.save()
    kube = client_for(kube_cluster)
    env = create_project(acting_user=owner, space=space, name="shop", display_name="", cluster=kube_cluster).environments.get()
    service = deploy(env, owner, replicas="1", custom_domains="shop.example.com")
    assert reconcile_service.apply(args=[service.pk, service.generation]).get() == "applied"
    ingress = kube.get("networking.k8s.io/v1", "Ingress", "web", env.namespace)
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt-prod"
    assert ingress["spec"]["tls"][0]["secretName"] == "web-tls"
    # What cert-manager writes once the issuer has signed.
    kube.apply([{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                 "metadata": {"name": "web-tls", "namespace": env.namespace},
                 "data": {"tls.crt": "", "tls.key": ""}}])

    service = actions.delete_service(owner, service)
    assert reconcile_service.apply(args=[service.pk, service.generation]).get() == "deleted"
    assert kube.get("v1", "Secret", "web-tls", env.namespace) is None
    assert kube.get("networking.k8s.io/v1", "Ingress", "web", env.namespace) is None
