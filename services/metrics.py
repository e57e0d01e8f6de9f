"""CPU and memory over time: the sampler, the roll-ups and the reads behind the charts.

Each cluster is read once per `METRICS_INTERVAL_SECONDS` by its own Celery task: one list of
PodMetrics (metrics.k8s.io) for every ale pod, and one list of the same pods for what ended and
restarted (`lastState.terminated`: the out-of-memory kills). The numbers are summed per service,
kept per pod too, and written with one bulk insert per table. Beat's tick (`sample_metrics`)
enqueues the reads; a cluster that fails waits longer each time (`MetricsSource.next_attempt_at`)
and, being its own task, never holds up another. A cluster that does not serve the metrics API
is recorded as such, and the pages say so in one sentence.

Storage is downsampled: raw samples for 6 hours, minute roll-ups for 2 days, ten-minute roll-ups
for `METRICS_RETENTION_DAYS`; `roll_up_metrics` (beat, every minute) rolls up and prunes. Each
chart range reads one resolution, so a chart is one range scan of the
(service, resolution, at) index.
"""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from functools import partial
from typing import Any

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import Avg, Exists, F, Max, OuterRef, Subquery
from django.utils import timezone

from clusters.client import client_for
from clusters.errors import ClusterError
from clusters.labels import SERVICE_LABEL, SERVICE_SELECTOR
from clusters.models import Cluster
from services import charts
from services.models import (
    ContainerTermination,
    MetricSample,
    MetricsSource,
    PodMetricSample,
    Resolution,
    Revision,
    RevisionUsage,
    Service,
)

logger = logging.getLogger(__name__)


# Rows per INSERT: under SQLite's bound-parameter limit (7 columns each).
BATCH = 1000
PRUNE_BATCH = 5000
# A failing cluster is read again after interval x 2^failures, at most this long.
MAX_BACKOFF_SECONDS = 600
# A cluster without the metrics API is asked again this often: metrics-server may be installed.
UNAVAILABLE_RECHECK_SECONDS = 600

RAW_KEEP_SECONDS = 6 * 3600
MINUTE_KEEP_SECONDS = 2 * 86400

# The chart ranges: how far back, and which resolution holds that many points (about a
# thousand at most: 1h raw = 240, 6h raw = 1,440, 24h minute = 1,440, 7d ten-minute = 1,008).
RANGES: dict[str, tuple[int, int]] = {
    "1h": (3600, Resolution.RAW),
    "6h": (6 * 3600, Resolution.RAW),
    "24h": (86400, Resolution.MINUTE),
    "7d": (7 * 86400, Resolution.TEN_MINUTES),
}
DEFAULT_RANGE = "1h"

_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIXES = {
    "": 1.0, "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
    "Ki": 1024.0, "Mi": 1024.0**2, "Gi": 1024.0**3, "Ti": 1024.0**4,
}


def parse_quantity(value: str | None) -> float:
    """A Kubernetes quantity (`1500000n`, `250m`, `262144Ki`, `1Gi`) as a number; 0 when absent
    or unreadable (a sample with a part missing is still worth keeping)."""
    match = _QUANTITY.match((value or "").strip())
    if not match or match.group(2) not in _SUFFIXES:
        return 0.0
    try:
        return float(match.group(1)) * _SUFFIXES[match.group(2)]
    except ValueError:
        return 0.0


def retention_seconds(resolution: int) -> int:
    if resolution == Resolution.RAW:
        return RAW_KEEP_SECONDS
    if resolution == Resolution.MINUTE:
        return MINUTE_KEEP_SECONDS
    return settings.METRICS_RETENTION_DAYS * 86400


# --- pure: from what the cluster says to rows ----------------------------------------------------


@dataclass
class Reading:
    """One sampling of a cluster: per service (public id) and per pod."""

    services: dict[str, tuple[float, int, int]] = field(default_factory=dict)  # cpu, memory, pods
    pods: list[tuple[str, str, float, int]] = field(default_factory=list)  # service, pod, cpu, memory


def read_pod_metrics(items: Iterable[Mapping[str, Any]]) -> Reading:
    """Sum each PodMetrics' containers per pod, and the pods per service (by `ale.dev/service`)."""
    reading = Reading()
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for item in items:
        meta = item.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if not service:
            continue
        cpu = sum(parse_quantity((c.get("usage") or {}).get("cpu")) for c in item.get("containers") or [])
        memory = int(sum(parse_quantity((c.get("usage") or {}).get("memory")) for c in item.get("containers") or []))
        reading.pods.append((service, meta.get("name", ""), cpu, memory))
        total = totals[service]
        total[0] += cpu
        total[1] += memory
        total[2] += 1
    reading.services = {service: (cpu, int(memory), int(pods)) for service, (cpu, memory, pods) in totals.items()}
    return reading


def _epoch(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)).timestamp())


@dataclass(frozen=True)
class Termination:
    service: str
    pod: str
    container: str
    restart_count: int
    reason: str
    exit_code: int | None
    at: int
    memory_limit_bytes: int | None


def read_terminations(pods: Iterable[Mapping[str, Any]]) -> list[Termination]:
    """The last termination of every restarted container, from the pods' `lastState`."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        service = (meta.get("labels") or {}).get(SERVICE_LABEL)
        if not service:
            continue
        limits = {
            c.get("name", ""): ((c.get("resources") or {}).get("limits") or {}).get("memory")
            for c in (pod.get("spec") or {}).get("containers") or []
        }
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            ended = (status.get("lastState") or {}).get("terminated") or {}
            restarts = int(status.get("restartCount") or 0)
            at = _epoch(ended.get("finishedAt"))
            if not ended or restarts < 1 or at is None:
                continue
            limit = parse_quantity(limits.get(status.get("name", "")))
            found.append(
                Termination(
                    service=service,
                    pod=meta.get("name", ""),
                    container=status.get("name", ""),
                    restart_count=restarts,
                    reason=ended.get("reason") or "",
                    exit_code=ended.get("exitCode"),
                    at=at,
                    memory_limit_bytes=int(limit) or None,
                )
            )
    return found


# --- the sampler ------------------------------------------------------------------------------


@dataclass
class SampleResult:
    state: str
    services: int = 0
    pods: int = 0
    terminations: int = 0


def sample_cluster(cluster: Cluster, *, now: float | None = None) -> SampleResult:
    """Read one cluster's usage and store it. Raises ClusterError when the cluster fails;
    returns state `unavailable` when it serves no metrics API."""
    kube = client_for(cluster)
    items = kube.pod_metrics(label_selector=SERVICE_SELECTOR)
    if items is None:
        return SampleResult(MetricsSource.State.UNAVAILABLE)
    pods, _ = kube.list("v1", "Pod", label_selector=SERVICE_SELECTOR)
    moment = time.time() if now is None else now
    # Aligned to the interval: a read repeated within one interval (a task redelivered) lands
    # on the same key and is dropped by the unique constraint instead of doubling a point.
    at = int(moment) - int(moment) % settings.METRICS_INTERVAL_SECONDS
    return write_sample(cluster.pk, at, read_pod_metrics(items), read_terminations(pods))


def write_sample(cluster_id: int, at: int, reading: Reading, terminations: list[Termination]) -> SampleResult:
    """Store one reading: one query for the services' ids, one bulk insert per table."""
    public_ids = set(reading.services) | {t.service for t in terminations}
    ids = dict(
        Service.objects.filter(environment__cluster_id=cluster_id, public_id__in=public_ids).values_list(
            "public_id", "pk"
        )
    )
    samples = [
        MetricSample(service_id=ids[s], resolution=Resolution.RAW, at=at, cpu_cores=cpu, memory_bytes=mem, pods=n)
        for s, (cpu, mem, n) in reading.services.items()
        if s in ids
    ]
    pod_samples = [
        PodMetricSample(service_id=ids[s], pod=pod, resolution=Resolution.RAW, at=at, cpu_cores=cpu, memory_bytes=mem)
        for s, pod, cpu, mem in reading.pods
        if s in ids
    ]
    ended = [
        ContainerTermination(
            service_id=ids[t.service],
            pod=t.pod,
            container=t.container,
            restart_count=t.restart_count,
            reason=t.reason,
            exit_code=t.exit_code,
            at=t.at,
            memory_limit_bytes=t.memory_limit_bytes,
        )
        for t in terminations
        if t.service in ids
    ]
    with transaction.atomic():
        MetricSample.objects.bulk_create(samples, batch_size=BATCH, ignore_conflicts=True)
        PodMetricSample.objects.bulk_create(pod_samples, batch_size=BATCH, ignore_conflicts=True)
        if ended:
            ContainerTermination.objects.bulk_create(ended, batch_size=BATCH, ignore_conflicts=True)
    return SampleResult(MetricsSource.State.OK, len(samples), len(pod_samples), len(ended))


def backoff_seconds(failures: int, retry_after: float | None = None) -> float:
    """Capped exponential backoff with full jitter, never sooner than the server's Retry-After."""
    ceiling = min(settings.METRICS_INTERVAL_SECONDS * 2 ** max(failures, 0), MAX_BACKOFF_SECONDS)
    return max(random.uniform(settings.METRICS_INTERVAL_SECONDS, ceiling), retry_after or 0.0)


def claim_due_clusters(now: datetime | None = None) -> list[int]:
    """The clusters whose read is due, each claimed for this tick with a compare-and-set."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.METRICS_INTERVAL_SECONDS)
    cluster_ids = list(Cluster.objects.filter(environments__isnull=False).distinct().values_list("pk", flat=True))
    existing = set(MetricsSource.objects.filter(cluster_id__in=cluster_ids).values_list("cluster_id", flat=True))
    MetricsSource.objects.bulk_create(
        [MetricsSource(cluster_id=pk) for pk in cluster_ids if pk not in existing], ignore_conflicts=True
    )
    due = []
    for pk, next_attempt in MetricsSource.objects.filter(cluster_id__in=cluster_ids).values_list(
        "cluster_id", "next_attempt_at"
    ):
        if next_attempt is not None and next_attempt > now:
            continue
        # Claimed until the next tick; the read sets the real next time (later, when it fails).
        if MetricsSource.objects.filter(cluster_id=pk, next_attempt_at=next_attempt).update(
            next_attempt_at=now + interval - timedelta(seconds=1)
        ):
            due.append(pk)
    return due


def sample_and_record(cluster: Cluster) -> SampleResult | None:
    """Sample one cluster and record how it went on its MetricsSource; None when it failed."""
    now = timezone.now()
    source, _ = MetricsSource.objects.get_or_create(cluster=cluster)
    try:
        result = sample_cluster(cluster)
    except ClusterError as exc:
        failures = source.failures + 1
        delay = backoff_seconds(failures, exc.retry_after)
        MetricsSource.objects.filter(pk=source.pk).update(
            state=MetricsSource.State.FAILING,
            failures=failures,
            message=exc.user_message,
            next_attempt_at=now + timedelta(seconds=delay),
        )
        logger.warning("metrics of cluster %s: %s (attempt %d, next in %.0f s)", cluster.name, exc, failures, delay)
        return None
    if result.state == MetricsSource.State.UNAVAILABLE:
        MetricsSource.objects.filter(pk=source.pk).update(
            state=result.state,
            failures=0,
            message="The cluster does not serve metrics.k8s.io (metrics-server is not installed).",
            next_attempt_at=now + timedelta(seconds=UNAVAILABLE_RECHECK_SECONDS),
        )
        return result
    MetricsSource.objects.filter(pk=source.pk).update(
        state=result.state, failures=0, message="", last_sampled_at=now
    )
    return result


@shared_task(ignore_result=True)
def sample_metrics() -> int:
    """Beat's tick: enqueue one read per due cluster (each its own task, so a slow or failing
    cluster never delays another); returns how many."""
    due = claim_due_clusters()
    for pk in due:
        transaction.on_commit(partial(sample_cluster_metrics.delay, pk), robust=True)
    return len(due)


@shared_task(ignore_result=True, expires=60)
def sample_cluster_metrics(cluster_id: int) -> str:
    cluster = Cluster.objects.filter(pk=cluster_id).first()
    if cluster is None:
        return "gone"
    result = sample_and_record(cluster)
    return result.state if result else MetricsSource.State.FAILING


# --- roll-ups and pruning ------------------------------------------------------------------------


def roll_up(now: float | None = None) -> dict[str, int]:
    """Minute roll-ups of the raw samples, ten-minute ones of the minutes, for every bucket that
    is complete and not rolled up yet; then prune each resolution past its retention."""
    moment = int(time.time() if now is None else now)
    # A bucket is complete once the sample of its last interval can no longer arrive.
    settled = moment - settings.METRICS_INTERVAL_SECONDS
    counts: dict[str, int] = {}
    for source, target in ((Resolution.RAW, Resolution.MINUTE), (Resolution.MINUTE, Resolution.TEN_MINUTES)):
        for model, keys in ((MetricSample, ("service_id",)), (PodMetricSample, ("service_id", "pod"))):
            end = settled - settled % target
            last = model.objects.filter(resolution=target).aggregate(last=Max("at"))["last"]
            start = last + target if last is not None else end - retention_seconds(source)
            start -= start % target
            if start >= end:
                continue
            extra = {"pods": Max("pods")} if model is MetricSample else {}
            rows = (
                model.objects.filter(resolution=source, at__gte=start, at__lt=end)
                .annotate(bucket=F("at") - F("at") % target)
                .values(*keys, "bucket")
                .annotate(cpu=Avg("cpu_cores"), memory=Max("memory_bytes"), **extra)
                .order_by()
            )
            made = [
                model(
                    resolution=target,
                    at=row.pop("bucket"),
                    cpu_cores=row.pop("cpu"),
                    memory_bytes=row.pop("memory"),
                    **row,
                )
                for row in rows
            ]
            model.objects.bulk_create(made, batch_size=BATCH, ignore_conflicts=True)
            counts[f"{model.__name__}:{target}"] = len(made)
    counts["pruned"] = prune(moment)
    return counts


def prune(now: int) -> int:
    total = 0
    for model in (MetricSample, PodMetricSample):
        for resolution in Resolution.values:
            cutoff = now - retention_seconds(resolution)
            while True:
                # In batches: one huge DELETE holds SQLite's single write lock for too long.
                batch = list(
                    model.objects.filter(resolution=resolution, at__lt=cutoff).values_list("pk", flat=True)[:PRUNE_BATCH]
                )
                if not batch:
                    break
                total += model.objects.filter(pk__in=batch).delete()[0]
    cutoff = now - settings.METRICS_RETENTION_DAYS * 86400
    total += ContainerTermination.objects.filter(at__lt=cutoff).delete()[0]
    return total


@shared_task(acks_late=True, ignore_result=True)
def roll_up_metrics() -> dict[str, int]:
    counts = roll_up()
    counts["measured"] = record_revision_usage()
    return counts






# --- reads for the pages -------------------------------------------------------------------------


def metrics_unavailable(cluster_id: int) -> bool:
    """Whether the cluster was found to serve no metrics API at its last read."""
    return MetricsSource.objects.filter(cluster_id=cluster_id, state=MetricsSource.State.UNAVAILABLE).exists()


def termination_title(termination: ContainerTermination) -> str:
    when = datetime.fromtimestamp(termination.at, tz=dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    if termination.is_oom:
        limit = f", at its {charts.format_memory(termination.memory_limit_bytes)} limit" if termination.memory_limit_bytes else ""
        what = f"Out of memory kill{limit}"
    else:
        what = f"Restart ({termination.reason or 'exited'}, exit code {termination.exit_code})"
    return f"{what}: {termination.pod} ({termination.container}), restart {termination.restart_count}, {when}"


def service_charts(
    service: Service, range_key: str, *, per_pod: bool = False, now: float | None = None
) -> list[charts.DrawnChart]:
    """The Metrics tab's CPU and memory charts for `range_key` (one of RANGES)."""
    seconds, resolution = RANGES[range_key]
    end = time.time() if now is None else now
    start = end - seconds
    rows = list(
        MetricSample.objects.filter(service=service, resolution=resolution, at__gte=start)
        .order_by("at")
        .values_list("at", "cpu_cores", "memory_bytes")
    )
    cpu_lines = [charts.Line("All pods", [(at, cpu) for at, cpu, _ in rows], "line-total")]
    memory_lines = [charts.Line("All pods", [(at, mem) for at, _, mem in rows], "line-total")]
    if per_pod:
        pods: dict[str, list[tuple[int, float, int]]] = defaultdict(list)
        for pod, at, cpu, mem in (
            PodMetricSample.objects.filter(service=service, resolution=resolution, at__gte=start)
            .order_by("at")
            .values_list("pod", "at", "cpu_cores", "memory_bytes")
        ):
            pods[pod].append((at, cpu, mem))
        for index, (pod, points) in enumerate(sorted(pods.items())):
            css = f"line-pod line-pod-{index % 6}"
            cpu_lines.append(charts.Line(pod, [(at, cpu) for at, cpu, _ in points], css))
            memory_lines.append(charts.Line(pod, [(at, mem) for at, _, mem in points], css))
    markers = [
        charts.Marker(
            revision.created_at.timestamp(),
            f"Revision {revision.number} · {revision.spec.get('image') or 'built from Git'} · "
            f"{revision.created_by.username if revision.created_by else 'ale'}",
            "marker-revision",
        )
        for revision in service.revisions.filter(created_at__gte=datetime.fromtimestamp(start, tz=dt_timezone.utc))
        .select_related("created_by")
        .order_by("number")
    ]
    markers += [
        charts.Marker(t.at, termination_title(t), "marker-oom" if t.is_oom else "marker-restart")
        for t in ContainerTermination.objects.filter(service=service, at__gte=start).order_by("at")
    ]
    # Requests equal limits in ale's manifests; both are drawn, the limit over the request.
    cpu_cores = service.cpu_millicores / 1000 * service.desired_replicas
    memory_bytes = service.memory_mib * charts.MIB * service.desired_replicas
    every = f" (× {service.desired_replicas} pods)" if service.desired_replicas > 1 else ""
    return [
        charts.draw(
            name="cpu", title="CPU", start=start, end=end, lines=cpu_lines, markers=markers, fmt=charts.format_cpu,
            levels=[charts.Level(f"Request{every}", cpu_cores, "level-request"),
                    charts.Level(f"Limit{every}", cpu_cores, "level-limit")],
        ),
        charts.draw(
            name="memory", title="Memory", start=start, end=end, lines=memory_lines, markers=markers,
            fmt=charts.format_memory,
            levels=[charts.Level(f"Request{every}", memory_bytes, "level-request"),
                    charts.Level(f"Limit{every}", memory_bytes, "level-limit")],
        ),
    ]


# --- after a deploy settles ----------------------------------------------------------------------

# A deploy is measured this long after it was made: pods have started and warmed up.
SETTLE_SECONDS = 300
# The first minute after a deploy (start-up) is left out of its measure.
WARM_UP_SECONDS = 60
# The card mentions a change between two revisions above this fraction.
CHANGE_THRESHOLD = 0.25


def record_revision_usage(now: float | None = None) -> int:
    """Measure each running service whose deploy has settled and is not measured yet; keep the
    last two measures per service (what the card compares)."""
    moment = time.time() if now is None else now
    settled = datetime.fromtimestamp(moment - SETTLE_SECONDS, tz=dt_timezone.utc)
    latest = Revision.objects.filter(service=OuterRef("pk")).order_by("-number").values("number")[:1]
    measured = RevisionUsage.objects.filter(service=OuterRef("pk"), measured_from=OuterRef("deployed_at"))
    candidates = (
        Service.objects.filter(status=Service.Status.RUNNING, deployed_at__lte=settled)
        .annotate(revision=Subquery(latest))
        .exclude(Exists(measured))
        .exclude(revision=None)
        .values_list("pk", "revision", "deployed_at")
    )
    made = 0
    for pk, number, deployed_at in candidates:
        since = max(deployed_at.timestamp() + WARM_UP_SECONDS, moment - RAW_KEEP_SECONDS)
        usage = MetricSample.objects.filter(service_id=pk, resolution=Resolution.RAW, at__gte=since).aggregate(
            cpu=Avg("cpu_cores"), memory=Avg("memory_bytes")
        )
        if usage["cpu"] is None:
            continue
        RevisionUsage.objects.update_or_create(
            service_id=pk,
            number=number,
            defaults={"cpu_cores": usage["cpu"], "memory_bytes": int(usage["memory"]), "measured_from": deployed_at},
        )
        keep = RevisionUsage.objects.filter(service_id=pk).order_by("-number").values_list("pk", flat=True)[:2]
        RevisionUsage.objects.filter(service_id=pk).exclude(pk__in=list(keep)).delete()
        made += 1
    return made


def usage_change(current: RevisionUsage, previous: RevisionUsage) -> str:
    """"memory +85% since revision 12", naming the resources that moved past the threshold."""
    parts = []
    for name, now_value, then_value in (
        ("CPU", current.cpu_cores, previous.cpu_cores),
        ("memory", current.memory_bytes, previous.memory_bytes),
    ):
        if then_value and abs(now_value - then_value) / then_value > CHANGE_THRESHOLD:
            parts.append(f"{name} {(now_value - then_value) / then_value:+.0%}")
    return f"{', '.join(parts)} since revision {previous.number}" if parts else ""


# --- the cards -----------------------------------------------------------------------------------

SPARK_SECONDS = 3600


@dataclass
class CardMetrics:
    cpu_path: str = ""
    memory_path: str = ""
    cpu_now: str = ""
    memory_now: str = ""
    oom: str = ""
    change: str = ""


def oom_sentence(limit_bytes: int | None, restarts: int) -> str:
    limit = f"used its {charts.format_memory(limit_bytes)} limit" if limit_bytes else "used all the memory it could"
    times = "1 time" if restarts == 1 else f"{restarts} times"
    return f"Out of memory: {limit}, restarted {times}."


def oom_sentences(services: list[Service], now: float | None = None) -> dict[int, str]:
    """The out-of-memory sentence of each service killed for memory in the last day since its
    last deploy (a kill before it may be what the user fixed), in one query. A kill's time has
    whole seconds: of two kills in one second, the later is told by its restarts."""
    moment = time.time() if now is None else now
    by_pk = {service.pk: service for service in services}
    sentences: dict[int, str] = {}
    for termination in ContainerTermination.objects.filter(
        service_id__in=by_pk, reason="OOMKilled", at__gte=moment - 86400
    ).order_by("service_id", "-at", "-restart_count"):
        service = by_pk[termination.service_id]
        if termination.service_id in sentences or (
            service.deployed_at and termination.at < service.deployed_at.timestamp()
        ):
            continue
        sentences[termination.service_id] = oom_sentence(termination.memory_limit_bytes, termination.restart_count)
    return sentences


def card_metrics(services: list[Service], now: float | None = None) -> dict[int, CardMetrics]:
    """Sparklines (CPU and memory, last hour), the out-of-memory sentence and the change since
    the previous revision for every card, in three queries whatever the number of cards."""
    moment = time.time() if now is None else now
    start = moment - SPARK_SECONDS
    by_pk = {service.pk: service for service in services}
    found: dict[int, CardMetrics] = {pk: CardMetrics() for pk in by_pk}
    if not by_pk:
        return found
    points: dict[int, list[tuple[int, float, int]]] = defaultdict(list)
    # One raw sample a minute: 60 points a card, fresh to the last minute.
    for pk, at, cpu, memory in (
        MetricSample.objects.filter(service_id__in=by_pk, resolution=Resolution.RAW, at__gte=start)
        .annotate(offset=F("at") % 60)
        .filter(offset__lt=settings.METRICS_INTERVAL_SECONDS)
        .order_by("service_id", "at")
        .values_list("service_id", "at", "cpu_cores", "memory_bytes")
    ):
        points[pk].append((at, cpu, memory))
    for pk, series in points.items():
        service = by_pk[pk]
        card = found[pk]
        card.cpu_path = charts.sparkline(
            [(at, cpu) for at, cpu, _ in series], start=start, end=moment,
            ceiling=service.cpu_millicores / 1000 * service.replicas,
        )
        card.memory_path = charts.sparkline(
            [(at, mem) for at, _, mem in series], start=start, end=moment,
            ceiling=service.memory_mib * charts.MIB * service.replicas,
        )
        card.cpu_now = charts.format_cpu(series[-1][1])
        card.memory_now = charts.format_memory(series[-1][2])
    for pk, sentence in oom_sentences(services, moment).items():
        found[pk].oom = sentence
    usages: dict[int, list[RevisionUsage]] = defaultdict(list)
    for usage in RevisionUsage.objects.filter(service_id__in=by_pk).order_by("service_id", "-number"):
        usages[usage.service_id].append(usage)
    for pk, pair in usages.items():
        service = by_pk[pk]
        if len(pair) >= 2 and service.deployed_at and pair[0].measured_from == service.deployed_at:
            found[pk].change = usage_change(pair[0], pair[1])
    return found


def attach_card_metrics(services: list[Service]) -> list[Service]:
    """Set `card_metrics` on each service (what `services/_card_metrics.html` reads)."""
    cards = card_metrics(services)
    for service in services:
        service.card_metrics = cards[service.pk]
    return services


# --- right-sizing --------------------------------------------------------------------------------

# Requests at least this many times the suggestion are "far above" what the service uses.
OVERSIZE_FACTOR = 2
# Headroom over the busiest 5% of the last day: CPU is throttled when short, memory is killed.
CPU_HEADROOM = 1.5
MEMORY_HEADROOM = 1.3
# At least an hour of minutes (or of raw samples) before ale judges a size.
MIN_POINTS = 60


@dataclass(frozen=True)
class Suggestion:
    p95_cpu_cores: float
    p95_memory_bytes: int
    cpu_millicores: int
    memory_mib: int
    frees_cpu_millicores: int
    frees_memory_mib: int


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))]


def suggest_size(
    per_pod: list[tuple[float, float]], *, cpu_millicores: int, memory_mib: int, replicas: int,
    min_cpu_millicores: int = 100, min_memory_mib: int = 16,
) -> Suggestion | None:
    """A smaller size for one pod when its request is far above its p95 use, or None.

    `per_pod` is (CPU cores, memory bytes) per pod over the last day. Pure: tested alone.
    """
    if len(per_pod) < MIN_POINTS:
        return None
    p95_cpu = percentile([cpu for cpu, _ in per_pod], 0.95)
    p95_memory = percentile([memory for _, memory in per_pod], 0.95)
    cpu = max(min_cpu_millicores, math.ceil(p95_cpu * CPU_HEADROOM * 1000 / 50) * 50)
    memory = max(min_memory_mib, math.ceil(p95_memory * MEMORY_HEADROOM / charts.MIB / 32) * 32)
    cpu_far = cpu_millicores >= OVERSIZE_FACTOR * cpu
    memory_far = memory_mib >= OVERSIZE_FACTOR * memory
    if not (cpu_far or memory_far):
        return None
    cpu = cpu if cpu_far else cpu_millicores
    memory = memory if memory_far else memory_mib
    return Suggestion(
        p95_cpu_cores=p95_cpu,
        p95_memory_bytes=int(p95_memory),
        cpu_millicores=cpu,
        memory_mib=memory,
        frees_cpu_millicores=(cpu_millicores - cpu) * replicas,
        frees_memory_mib=(memory_mib - memory) * replicas,
    )


def right_size(service: Service, now: float | None = None) -> Suggestion | None:
    """The service page's suggestion, from the last day's minutes (raw samples for a service
    younger than its first minutes): one query."""
    moment = time.time() if now is None else now
    rows = list(
        MetricSample.objects.filter(service=service, resolution__in=(Resolution.RAW, Resolution.MINUTE),
                                    at__gte=moment - 86400, pods__gt=0)
        .values_list("resolution", "cpu_cores", "memory_bytes", "pods")
    )
    minutes = [(cpu / pods, memory / pods) for resolution, cpu, memory, pods in rows if resolution == Resolution.MINUTE]
    raw = [(cpu / pods, memory / pods) for resolution, cpu, memory, pods in rows if resolution == Resolution.RAW]
    return suggest_size(
        minutes if len(minutes) >= MIN_POINTS else raw,
        cpu_millicores=service.cpu_millicores, memory_mib=service.memory_mib, replicas=service.replicas,
    )


def measured_for_space(space_id: int, now: float | None = None) -> dict[tuple[str, str], float]:
    """What the space's running services use now, by (capacity, "cpu"|"memory"): millicores and
    MiB, from each service's latest sample of the last two intervals. One query."""
    moment = time.time() if now is None else now
    latest: dict[int, tuple[int, str, float, int]] = {}
    for pk, capacity, at, cpu, memory in MetricSample.objects.filter(
        service__environment__project__space_id=space_id,
        service__desired_state=Service.DesiredState.RUNNING,
        resolution=Resolution.RAW,
        at__gte=moment - 2 * settings.METRICS_INTERVAL_SECONDS,
    ).values_list("service_id", "service__capacity", "at", "cpu_cores", "memory_bytes"):
        if pk not in latest or latest[pk][0] < at:
            latest[pk] = (at, capacity, cpu, memory)
    totals: dict[tuple[str, str], float] = defaultdict(float)
    for _, capacity, cpu, memory in latest.values():
        totals[(capacity, "cpu")] += cpu * 1000
        totals[(capacity, "memory")] += memory / charts.MIB
    return dict(totals)
