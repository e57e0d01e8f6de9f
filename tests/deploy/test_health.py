"""`/healthz` and `/readyz` as the kubelet asks them: the pod IP as Host, plain HTTP."""

from __future__ import annotations

import pytest
from django.test import Client

from ale_site import health

# What a kubelet's httpGet probe sends: the pod IP and port, never a configured host name.
PROBE = {"HTTP_HOST": "10.244.1.17:8000"}


@pytest.fixture
def production_like(settings):
    settings.ALLOWED_HOSTS = ["ale.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    settings.DEBUG = False


def test_it_answers_healthz_with_a_pod_ip_host_and_no_database(production_like):
    # No django_db mark: any database access here would raise.
    response = Client().get("/healthz", **PROBE)
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Cache-Control"] == "no-store"


@pytest.mark.django_db
def test_it_answers_readyz_when_the_database_and_redis_answer(production_like):
    response = Client().get("/readyz", **PROBE)
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_it_names_redis_when_redis_is_down(production_like, settings):
    # A port nothing listens on: the connection is refused at once.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz", **PROBE)
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert set(response.json()["failed"]) == {"redis"}


@pytest.mark.django_db
def test_it_names_the_database_when_it_fails(production_like, monkeypatch):
    def broken() -> None:
        raise OSError("connection refused")

    monkeypatch.setitem(health.CHECKS, "database", broken)
    response = Client().get("/readyz", **PROBE)
    assert response.status_code == 503
    assert set(response.json()["failed"]) == {"database"}


@pytest.mark.django_db
def test_it_really_queries_the_database(production_like, django_assert_num_queries):
    with django_assert_num_queries(1):
        assert Client().get("/readyz", **PROBE).status_code == 200


def test_it_still_refuses_unknown_hosts_elsewhere(production_like):
    response = Client().get("/login/", **PROBE)
    assert response.status_code == 400


def test_it_leaves_other_methods_to_the_ordinary_stack(production_like):
    # A POST is not a probe: it goes through host validation like any request.
    assert Client().post("/healthz", **PROBE).status_code == 400


@pytest.mark.django_db
def test_it_routes_the_health_urls_too(client, settings):
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
