"""The service page's Metrics tab: who sees it, what it draws, bad input, the cluster without
the metrics API, and its query count."""

from __future__ import annotations

import re
import time

import pytest
from django.urls import reverse

from services import actions, metrics
from services.models import ContainerTermination, MetricSample, MetricsSource, PodMetricSample, Resolution
from tests.services.test_views import HX, make_service

pytestmark = pytest.mark.django_db


@pytest.fixture
def service(main_env, owner):
    return make_service(main_env, owner, replicas="2", memory="256Mi")


def url(service, **query: str) -> str:
    base = reverse("services:metrics", args=[service.public_id])
    return base + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def sample(service, *, ago: int, cpu: float, memory: int, resolution: int = Resolution.RAW) -> None:
    at = int(time.time()) - ago
    MetricSample.objects.create(service=service, resolution=resolution, at=at, cpu_cores=cpu, memory_bytes=memory, pods=2)
    for pod in ("api-1", "api-2"):
        PodMetricSample.objects.create(
            service=service, pod=pod, resolution=resolution, at=at, cpu_cores=cpu / 2, memory_bytes=memory // 2
        )


def test_it_draws_cpu_and_memory_with_request_limit_and_markers(member_client, service, owner):
    for ago in (600, 300, 60):
        sample(service, ago=ago, cpu=0.05, memory=100 * 1024 * 1024)
    actions.redeploy_service(owner, service)
    ContainerTermination.objects.create(
        service=service, pod="api-1", container="api", restart_count=3, reason="OOMKilled", exit_code=137,
        at=int(time.time()) - 120, memory_limit_bytes=256 * 1024 * 1024,
    )
    response = member_client.get(url(service))
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-chart="cpu"' in html and 'data-chart="memory"' in html
    assert html.count('class="chart-line line-total"') == 2
    # Request and limit of both pods: 2 × 256 MiB.
    assert "Limit (× 2 pods) 512 MiB" in html
    assert re.search(r"Revision 2 · nginx:1.27 · owner", html)
    assert "Out of memory kill, at its 256 MiB limit: api-1 (api), restart 3" in html
    # Per-pod lines only on demand.
    assert "line-pod" not in html
    with_pods = member_client.get(url(service, pods="1")).content.decode()
    assert with_pods.count("chart-line line-pod") == 4


def test_it_answers_htmx_with_the_charts_alone_for_each_range(member_client, service):
    sample(service, ago=3 * 86400, cpu=0.2, memory=1, resolution=Resolution.TEN_MINUTES)
    for key in metrics.RANGES:
        response = member_client.get(url(service, range=key), **HX)
        html = response.content.decode()
        assert response.status_code == 200
        assert html.lstrip().startswith('<section id="metrics-charts"')
        assert f'data-range="{key}" aria-current="true"' in html
        assert "<html" not in html
        # Live while open: the element polls its own range every sampling interval.
        assert f'hx-get="{url(service, range=key)}" hx-trigger="every 15s" hx-swap="outerHTML"' in html
    week = member_client.get(url(service, range="7d"), **HX).content.decode()
    assert "now 0.200 vCPU" in week


def test_it_refuses_an_unknown_range_by_name(member_client, service):
    response = member_client.get(url(service, range="2w"))
    assert response.status_code == 400
    assert "Unknown range '2w'" in response.content.decode() and "1h, 6h, 24h, 7d" in response.content.decode()


def test_it_hides_the_tab_from_an_outsider(outsider_client, service):
    assert outsider_client.get(url(service)).status_code == 404


def test_it_refuses_post(member_client, service):
    assert member_client.post(url(service)).status_code == 405


def test_it_says_so_when_the_cluster_has_no_metrics_api(member_client, service):
    MetricsSource.objects.create(cluster=service.environment.cluster, state=MetricsSource.State.UNAVAILABLE)
    html = member_client.get(url(service)).content.decode()
    assert "cluster has no metrics API (metrics-server is not installed)" in html
    assert "data-chart=" not in html


def test_it_reads_a_week_in_a_constant_number_of_queries(member_client, service, django_assert_max_num_queries):
    for ago in range(600, 7 * 86400, 600):
        sample(service, ago=ago, cpu=0.1, memory=1, resolution=Resolution.TEN_MINUTES)
    # Session and user, the service, the sidebar, the source, samples, revisions, terminations.
    with django_assert_max_num_queries(12):
        response = member_client.get(url(service, range="7d"))
    assert response.status_code == 200


def test_it_reads_a_chart_with_one_range_scan_of_the_index(service):
    from django.db import connection

    _, resolution = metrics.RANGES["7d"]
    query = MetricSample.objects.filter(service=service, resolution=resolution, at__gte=0).order_by("at").values_list(
        "at", "cpu_cores", "memory_bytes"
    )
    plan = query.explain()
    if connection.vendor == "sqlite":
        # The unique constraint's index (SQLite names it sqlite_autoindex_...), all three columns.
        assert re.search(r"SEARCH services_metricsample USING INDEX \S+ \(service_id=\? AND resolution=\? AND at>\?\)", plan), plan
        assert "TEMP B-TREE" not in plan, plan  # the index's order is the chart's: no sort
    else:
        assert "metric_sample_unique" in plan, plan
