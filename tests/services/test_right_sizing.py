"""Right-sizing: a smaller size suggested where requests are far above the last day's p95,
and the usage panel's requested vs used."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from services import metrics
from services.models import MetricSample, Resolution
from tests.services.test_views import make_service

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def test_it_suggests_a_size_only_when_the_request_is_far_above_the_p95():
    busy = [(0.010, 40 * MIB)] * 95 + [(0.200, 90 * MIB)] * 5
    suggestion = metrics.suggest_size(busy, cpu_millicores=1000, memory_mib=1024, replicas=2)
    # The busiest 5% are left out: 10m CPU and 40 MiB, with headroom, rounded up.
    assert suggestion.cpu_millicores == 100
    assert suggestion.memory_mib == 64
    assert suggestion.frees_cpu_millicores == 1800 and suggestion.frees_memory_mib == 1920
    assert metrics.suggest_size(busy, cpu_millicores=150, memory_mib=96, replicas=1) is None
    # Less than an hour of data: no judgement yet.
    assert metrics.suggest_size(busy[:30], cpu_millicores=1000, memory_mib=1024, replicas=1) is None


def fill_day(service, cpu: float, memory: int, pods: int = 1) -> None:
    now = int(time.time())
    MetricSample.objects.bulk_create(
        [
            MetricSample(service=service, resolution=Resolution.MINUTE, at=at, cpu_cores=cpu * pods,
                         memory_bytes=memory * pods, pods=pods)
            for at in range(now - 86400 + 60, now - now % 60, 60)
        ]
    )


def test_it_shows_the_suggestion_and_what_it_frees_on_the_service_page(member_client, main_env, owner):
    service = make_service(main_env, owner, cpu="1", memory="1Gi", replicas="2")
    fill_day(service, 0.02, 50 * MIB, pods=2)
    html = member_client.get(reverse("services:detail", args=[service.public_id])).content.decode()
    assert "data-right-size" in html
    assert "0.1 vCPU and 96 MiB per pod would do, and free 1.8 vCPU and 1856 MiB of the space's" in html
    assert "on-demand allocation" in html


def test_it_suggests_nothing_for_a_service_that_uses_its_size(member_client, main_env, owner):
    service = make_service(main_env, owner, cpu="0.25", memory="256Mi")
    fill_day(service, 0.2, 200 * MIB)
    html = member_client.get(reverse("services:detail", args=[service.public_id])).content.decode()
    assert "data-right-size" not in html


def test_it_shows_requested_and_used_in_the_usage_panel(member_client, main_env, owner, space):
    service = make_service(main_env, owner, cpu="0.5", memory="512Mi")
    MetricSample.objects.create(service=service, resolution=Resolution.RAW, at=int(time.time()), cpu_cores=0.12,
                                memory_bytes=200 * MIB, pods=1)
    html = member_client.get(reverse("spaces:usage", args=[space.public_id]), HTTP_HX_REQUEST="true").content.decode()
    assert "0.5 vCPU / " in html and "requested; 0.12 vCPU in use now" in html
    assert "requested; 200 MiB in use now" in html
