"""Cards: sparklines without a query per card, out-of-memory explained (against the
devcluster), and the change in usage since the previous revision."""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone

import pytest
from django.urls import reverse
from django.utils import timezone

from services import actions, live, metrics
from services.access import CARD_RELATED
from services.models import ContainerTermination, MetricSample, Resolution, Service
from tests.services.test_tasks import deploy, make_env, reconcile
from tests.services.test_views import make_service
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def page(client, environment) -> str:
    return client.get(reverse("environments:detail", args=[environment.public_id])).content.decode()


def add_services(environment, count: int, start: int = 0) -> list[Service]:
    services = Service.objects.bulk_create(
        [Service(environment=environment, name=f"svc-{start + i:03}", image="nginx:1.27", port=80) for i in range(count)]
    )
    now = int(time.time())
    MetricSample.objects.bulk_create(
        [
            MetricSample(service=s, resolution=Resolution.RAW, at=now - now % 60 - 60 * k, cpu_cores=0.01 * (30 - k),
                         memory_bytes=(20 + k) * MIB, pods=1)
            for s in services
            for k in range(30)
        ]
    )
    return services


def test_it_draws_every_cards_sparklines_in_the_same_number_of_queries(
    member_client, main_env, django_assert_num_queries, django_assert_max_num_queries
):
    add_services(main_env, 10)
    with django_assert_max_num_queries(30) as first:
        html = page(member_client, main_env)
    assert html.count("data-sparklines") == 10
    assert "CPU 0.300 vCPU" in html and "Memory 20 MiB" in html
    add_services(main_env, 190, start=10)
    with django_assert_num_queries(len(first.captured_queries)):
        html = page(member_client, main_env)
    # A page of cards (CARDS_PER_PAGE), each with its sparklines.
    assert html.count("data-sparklines") == 60


def test_it_explains_an_out_of_memory_kill_on_the_card_and_in_the_log_view(
    kube_cluster, space, owner, member_client
):
    env = make_env(kube_cluster, space, owner)
    leak = deploy(env, owner, name="leaky", image="memleak:1", memory="64Mi", replicas="1",
                  env_vars="LEAK_MIB_PER_SECOND=200")
    assert reconcile(leak) == "applied"

    # A kill's time has whole seconds (as a kubelet's finishedAt): one in the deploy's own second
    # may be the previous revision's, and the card does not count it. This leak is killed within
    # its first second, so wait for a kill in a later one.
    leak.refresh_from_db()
    after_deploy = math.ceil(leak.deployed_at.timestamp())

    def killed_twice() -> bool:
        metrics.sample_and_record(kube_cluster)
        return ContainerTermination.objects.filter(
            service=leak, reason="OOMKilled", restart_count__gte=2, at__gte=after_deploy
        ).exists()

    wait_for(killed_twice, what="the leak killed for memory twice after its deploy", interval=0.3, timeout=40)
    restarts = ContainerTermination.objects.filter(service=leak).order_by("-at").first().restart_count
    html = page(member_client, env)
    sentence = re.search(r"Out of memory: used its 64 MiB limit, restarted (\d+) times\.", html)
    assert sentence, "the card does not explain the kill"
    assert int(sentence.group(1)) >= 2 and int(sentence.group(1)) <= restarts + 1
    edit = reverse("services:edit", args=[leak.public_id])
    assert f'hx-get="{edit}" hx-target="#modal-root">Raise its memory</a>' in html
    logs = member_client.get(reverse("services:logs", args=[leak.public_id])).content.decode()
    assert "Out of memory: used its 64 MiB limit" in logs and f'href="{edit}"' in logs

    # After the user raises the memory, the old kill no longer speaks for the service.
    actions.redeploy_service(owner, leak)
    assert "Out of memory" not in page(member_client, env)


def test_the_latest_of_two_kills_in_the_same_second_speaks_for_the_service(main_env, owner):
    service = make_service(main_env, owner, name="leaky")
    second = int(time.time())
    Service.objects.filter(pk=service.pk).update(deployed_at=datetime.fromtimestamp(second - 5, tz=dt_timezone.utc))
    service.refresh_from_db()
    # Inserted newest first: the order they come back in is then not the order they were written.
    for restarts in (3, 2, 1):
        ContainerTermination.objects.create(
            service=service, pod="leaky-1", container="web", restart_count=restarts, reason="OOMKilled",
            at=second, memory_limit_bytes=64 * MIB,
        )

    assert metrics.oom_sentences([service]) == {service.pk: "Out of memory: used its 64 MiB limit, restarted 3 times."}


def settle(service: Service, ago: int, memory_mib: int) -> None:
    """The service deployed `ago` seconds back and running since, at `memory_mib`."""
    deployed = timezone.now() - timedelta(seconds=ago)
    Service.objects.filter(pk=service.pk).update(status=Service.Status.RUNNING, deployed_at=deployed)
    now = int(time.time())
    MetricSample.objects.bulk_create(
        [
            MetricSample(service=service, resolution=Resolution.RAW, at=at, cpu_cores=0.05, memory_bytes=memory_mib * MIB,
                         pods=1)
            for at in range(now - ago + metrics.WARM_UP_SECONDS, now, 15)
        ],
        ignore_conflicts=True,
    )


def test_it_compares_the_new_revision_with_the_previous_once_it_settles(member_client, main_env, owner):
    service = make_service(main_env, owner, name="api")
    settle(service, 3 * 3600, 100)
    assert metrics.record_revision_usage() == 1
    assert "since revision" not in page(member_client, main_env)

    service.refresh_from_db()
    actions.redeploy_service(owner, service)  # revision 2
    MetricSample.objects.filter(service=service).delete()
    # Not settled yet: nothing measured, nothing said.
    settle(service, 60, 185)
    assert metrics.record_revision_usage() == 0
    settle(service, 900, 185)
    assert metrics.record_revision_usage() == 1
    html = page(member_client, main_env)
    assert "Memory +85% since revision 1" in html
    # Each deploy is measured once.
    assert metrics.record_revision_usage() == 0


def test_it_publishes_a_batch_of_live_cards_with_their_sparklines_in_three_queries(
    main_env, django_assert_num_queries
):
    add_services(main_env, 20)
    loaded = list(Service.objects.filter(environment=main_env).select_related(*CARD_RELATED))
    with django_assert_num_queries(3):
        live.publish_services(loaded)
    assert all(service.card_metrics.cpu_path for service in loaded)
