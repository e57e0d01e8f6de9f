"""The metrics sampler against the devcluster: what it stores, roll-ups, pruning, backoff."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from clusters.client import client_for
from clusters.models import Cluster
from devcluster import DevCluster, kubeconfig_text
from services import metrics
from services.models import ContainerTermination, MetricSample, MetricsSource, PodMetricSample, Resolution
from tests.services.test_tasks import deploy, make_env, ready_pods, reconcile
from tests.waiting import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def env(kube_cluster, space, owner):
    return make_env(kube_cluster, space, owner)


@pytest.fixture(scope="module")
def bare_devcluster():
    """A cluster without metrics-server: metrics.k8s.io is not served at all."""
    dc = DevCluster(pod_ready_seconds=0.2, metrics_api=False)
    dc.start()
    try:
        yield dc
    finally:
        dc.stop()


def running(kube, service, replicas: int = 1) -> None:
    assert reconcile(service) == "applied"
    wait_for(lambda: ready_pods(kube, service) == replicas, what=f"{replicas} ready pod(s) of {service.name}")


def stored(service, resolution: int = Resolution.RAW) -> list[MetricSample]:
    return list(MetricSample.objects.filter(service=service, resolution=resolution).order_by("at"))


def test_it_stores_more_cpu_for_a_log_generator_that_prints_more(env, owner, kube_cluster):
    kube = client_for(kube_cluster)
    slow = deploy(env, owner, name="slow", image="loggen:1", replicas="1", env_vars="LOG_RATE=10")
    fast = deploy(env, owner, name="fast", image="loggen:1", replicas="2", env_vars="LOG_RATE=2000")
    running(kube, slow)
    running(kube, fast, 2)

    result = wait_for(
        lambda: (r := metrics.sample_and_record(kube_cluster)) and r.services >= 2 and r,
        what="a sample of both services",
    )
    assert result.state == MetricsSource.State.OK
    [slow_sample], [fast_sample] = stored(slow), stored(fast)
    assert fast_sample.cpu_cores > 10 * slow_sample.cpu_cores
    assert fast_sample.pods == 2
    # The service's number is the sum of its pods'.
    pod_cpu = sum(PodMetricSample.objects.filter(service=fast).values_list("cpu_cores", flat=True))
    assert fast_sample.cpu_cores == pytest.approx(pod_cpu)
    assert MetricsSource.objects.get(cluster=kube_cluster).last_sampled_at is not None


def test_it_records_an_out_of_memory_kill_with_the_limit(env, owner, kube_cluster):
    kube = client_for(kube_cluster)
    leak = deploy(env, owner, name="leaky", image="memleak:1", memory="64Mi", replicas="1", env_vars="LEAK_MIB_PER_SECOND=200")
    assert reconcile(leak) == "applied"

    def killed() -> ContainerTermination | None:
        metrics.sample_and_record(kube_cluster)
        return ContainerTermination.objects.filter(service=leak, reason="OOMKilled").first()

    termination = wait_for(killed, what="an OOMKilled termination stored", interval=0.3)
    assert termination.memory_limit_bytes == 64 * 1024 * 1024
    assert termination.exit_code == 137
    # Seen again at the next sample: still one row for that restart.
    metrics.sample_and_record(kube_cluster)
    assert ContainerTermination.objects.filter(service=leak, restart_count=termination.restart_count).count() == 1


def test_it_records_a_cluster_without_the_metrics_api_and_the_tab_says_so(
    db, space, owner, member_client, bare_devcluster
):
    cluster = Cluster.objects.create(
        name="bare", connection=Cluster.Connection.KUBECONFIG,
        kubeconfig=kubeconfig_text(bare_devcluster.url, bare_devcluster.token),
    )
    env = make_env(cluster, space, owner, name="bare")
    service = deploy(env, owner, name="web", replicas="1")
    assert reconcile(service) == "applied"
    result = metrics.sample_and_record(cluster)
    assert result.state == MetricsSource.State.UNAVAILABLE
    source = MetricsSource.objects.get(cluster=cluster)
    assert source.state == MetricsSource.State.UNAVAILABLE
    assert "metrics-server" in source.message
    html = member_client.get(reverse("services:metrics", args=[service.public_id])).content.decode()
    assert "cluster has no metrics API (metrics-server is not installed), so ale cannot show its CPU and memory." in html
    assert "data-chart=" not in html


def test_it_backs_off_a_failing_cluster_without_delaying_the_others(db, space, owner, kube_cluster):
    down = Cluster.objects.create(
        name="down", connection=Cluster.Connection.KUBECONFIG, kubeconfig=kubeconfig_text("http://127.0.0.1:1", "x")
    )
    make_env(kube_cluster, space, owner, name="good")
    make_env(down, space, owner, name="bad")
    now = timezone.now()
    assert set(metrics.claim_due_clusters(now)) == {kube_cluster.pk, down.pk}
    # Claimed: a second tick within the interval enqueues nothing again.
    assert metrics.claim_due_clusters(now) == []

    assert metrics.sample_and_record(down) is None
    assert metrics.sample_and_record(kube_cluster).state == MetricsSource.State.OK
    failing = MetricsSource.objects.get(cluster=down)
    assert failing.state == MetricsSource.State.FAILING and failing.failures == 1
    assert failing.message

    # The failing cluster waits at least an interval; until then the healthy one is due at
    # every tick without it.
    assert failing.next_attempt_at >= now + timedelta(seconds=metrics.settings.METRICS_INTERVAL_SECONDS)
    just_before = failing.next_attempt_at - timedelta(seconds=1)
    assert metrics.claim_due_clusters(just_before) == [kube_cluster.pk]
    much_later = timezone.now() + timedelta(seconds=metrics.MAX_BACKOFF_SECONDS + 60)
    assert down.pk in metrics.claim_due_clusters(much_later)
    # Failing again waits longer (up to the cap): the backoff grows with the failures.
    assert metrics.backoff_seconds(1) <= 2 * metrics.settings.METRICS_INTERVAL_SECONDS
    assert max(metrics.backoff_seconds(10) for _ in range(20)) <= metrics.MAX_BACKOFF_SECONDS


def test_it_rolls_up_and_prunes_so_rows_stay_bounded(env, owner, settings):
    service = deploy(env, owner, name="steady")
    other = deploy(env, owner, name="other")
    interval = settings.METRICS_INTERVAL_SECONDS
    now = int(time.time())
    now -= now % 600
    start = now - 40 * 86400
    # Forty days of raw samples every interval for one service, as if the roll-up never ran:
    # written in the database in bulk, read back through the roll-ups.
    rows = [
        MetricSample(service=s, resolution=Resolution.RAW, at=at, cpu_cores=0.01 * (i % 7), memory_bytes=i, pods=1)
        for s in (service, other)
        for i, at in enumerate(range(now - 2 * 86400 - 3600, now, interval))
    ]
    MetricSample.objects.bulk_create(rows, batch_size=1000)
    old = [
        MetricSample(service=service, resolution=Resolution.TEN_MINUTES, at=at, cpu_cores=0.1, memory_bytes=1, pods=1)
        for at in range(start, now - 2 * 86400 - 3600, 600)
    ]
    MetricSample.objects.bulk_create(old, batch_size=1000)

    metrics.roll_up(now)

    raw = MetricSample.objects.filter(service=service, resolution=Resolution.RAW)
    minute = MetricSample.objects.filter(service=service, resolution=Resolution.MINUTE)
    ten = MetricSample.objects.filter(service=service, resolution=Resolution.TEN_MINUTES)
    assert raw.count() <= metrics.RAW_KEEP_SECONDS // interval + 1
    assert 0 < minute.count() <= metrics.MINUTE_KEEP_SECONDS // 60 + 1
    assert ten.count() <= settings.METRICS_RETENTION_DAYS * 144 + 1
    assert not ten.filter(at__lt=now - settings.METRICS_RETENTION_DAYS * 86400).exists()
    # A minute is the mean CPU and the peak memory of its raw samples.
    bucket = minute.order_by("-at").first()
    source = list(
        MetricSample.objects.filter(service=service, resolution=Resolution.RAW, at__gte=bucket.at, at__lt=bucket.at + 60)
    )
    assert bucket.cpu_cores == pytest.approx(sum(s.cpu_cores for s in source) / len(source))
    assert bucket.memory_bytes == max(s.memory_bytes for s in source)
    # Running again adds nothing: every complete bucket is already rolled up.
    before = MetricSample.objects.count()
    metrics.roll_up(now)
    assert MetricSample.objects.count() == before
