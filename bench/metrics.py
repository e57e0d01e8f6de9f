"""The metrics sampler's cost, a 7-day chart's server time and the bytes a service costs.

    python bench/metrics.py [--services 1000] [--neighbours 20] [--requests 30]

Prints three JSON lines:
- {"services": 1000, "pods": 2000, "sample_seconds": ..., "queries": ...}: one sampling cycle
  of 1,000 services x 2 pods from parsing the PodMetrics and Pod lists to the bulk insert
  (the two list calls to the cluster are not in it: their time is the cluster's);
- {"range": "7d", "p50_ms": ..., "p95_ms": ..., "queries": ...}: the Metrics tab's 7-day page of
  one service with full retention (raw 6 h, minutes 2 days, ten minutes 30 days, two pods),
  among `--neighbours` services with as much, through Django's test client;
- {"bytes_per_row": ..., "bytes_per_service_day": ..., "bytes_per_service_retained": ...}: what
  the database file grew by per row (indexes included), what one day of a two-pod service
  costs once rolled up to ten minutes, and a service's whole steady-state footprint.

It runs on a throwaway SQLite file unless --use-configured-db is given. Numbers only: it never
fails on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from support import setup_django  # noqa: E402  (bench/ is the script's own directory)

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--neighbours", type=int, default=20)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--use-configured-db", action="store_true")
    options = parser.parse_args()

    setup_django(use_configured_db=options.use_configured_db)
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from clusters.labels import MANAGED_BY, SERVICE_LABEL
    from clusters.models import Cluster
    from services import metrics
    from services.models import MetricSample, PodMetricSample, Resolution, Service
    from tests.factories import make_environment, make_project, make_space, make_user

    owner = make_user(f"bench{int(time.time())}")
    space = make_space(owner=owner)
    project = make_project(space, by=owner)
    environment = make_environment(project, by=owner)
    cluster: Cluster = environment.cluster
    services = Service.objects.bulk_create(
        [Service(environment=environment, name=f"svc-{i:04}", image="nginx:1.27", port=80, replicas=2)
         for i in range(options.services)]
    )

    # --- one sampling cycle ---
    labels = lambda s: {**MANAGED_BY, SERVICE_LABEL: s.public_id}  # noqa: E731
    items, pods = [], []
    for index, service in enumerate(services):
        for replica in range(2):
            name = f"{service.name}-abc-{replica}"
            items.append({"metadata": {"name": name, "namespace": environment.namespace, "labels": labels(service)},
                          "containers": [{"name": "app", "usage": {"cpu": f"{1000000 + index}n", "memory": "30000Ki"}}]})
            status = {"name": "app", "restartCount": 0, "state": {"running": {}}}
            if index % 50 == 0:  # a few were killed for memory
                status = {"name": "app", "restartCount": 2, "lastState": {"terminated": {
                    "reason": "OOMKilled", "exitCode": 137, "finishedAt": "2026-01-01T00:00:00Z"}}}
            pods.append({"metadata": {"name": name, "labels": labels(service)},
                         "spec": {"containers": [{"name": "app", "resources": {"limits": {"memory": "256Mi"}}}]},
                         "status": {"containerStatuses": [status]}})
    at = int(time.time())
    with CaptureQueriesContext(connection) as captured:
        started = time.perf_counter()
        result = metrics.write_sample(cluster.pk, at - at % 15, metrics.read_pod_metrics(items),
                                      metrics.read_terminations(pods))
        elapsed = time.perf_counter() - started
    assert result.services == options.services, result
    print(json.dumps({"services": options.services, "pods": 2 * options.services,
                      "sample_seconds": round(elapsed, 4), "queries": len(captured.captured_queries)}))
    MetricSample.objects.all().delete()
    PodMetricSample.objects.all().delete()

    # --- a 7-day chart at full retention, and the bytes it all takes ---
    now = int(time.time())
    layout = [
        (Resolution.RAW, settings.METRICS_INTERVAL_SECONDS, metrics.RAW_KEEP_SECONDS),
        (Resolution.MINUTE, 60, metrics.MINUTE_KEEP_SECONDS),
        (Resolution.TEN_MINUTES, 600, settings.METRICS_RETENTION_DAYS * 86400),
    ]

    def database_bytes() -> int:
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("PRAGMA page_count")
                pages = cursor.fetchone()[0]
                cursor.execute("PRAGMA page_size")
                return pages * cursor.fetchone()[0]
            cursor.execute("SELECT pg_total_relation_size('services_metricsample') + "
                           "pg_total_relation_size('services_podmetricsample')")
            return cursor.fetchone()[0]

    before = database_bytes()
    rows = 0
    for service in services[: options.neighbours + 1]:
        batch, pod_batch = [], []
        for resolution, step, keep in layout:
            for moment in range(now - keep - now % step, now, step):
                batch.append(MetricSample(service=service, resolution=resolution, at=moment, cpu_cores=0.01,
                                          memory_bytes=40 * MIB, pods=2))
                for replica in range(2):
                    pod_batch.append(PodMetricSample(service=service, pod=f"{service.name}-abc-{replica}",
                                                     resolution=resolution, at=moment, cpu_cores=0.005,
                                                     memory_bytes=20 * MIB))
        MetricSample.objects.bulk_create(batch, batch_size=2000)
        PodMetricSample.objects.bulk_create(pod_batch, batch_size=2000)
        rows += len(batch) + len(pod_batch)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE services_metricsample")
    per_row = (database_bytes() - before) / rows
    day_rows = 86400 // 600 * 3  # the service and its two pods, at ten minutes
    retained_rows = sum(keep // step for _, step, keep in layout) * 3

    client = Client()
    client.force_login(owner)
    url = reverse("services:metrics", args=[services[0].public_id]) + "?range=7d"
    for _ in range(3):
        assert client.get(url, secure=True).status_code == 200
    timings = []
    for _ in range(options.requests):
        started = time.perf_counter()
        response = client.get(url, secure=True)
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    with CaptureQueriesContext(connection) as captured:
        client.get(url, secure=True)
    timings.sort()
    print(json.dumps({"range": "7d", "p50_ms": round(statistics.median(timings), 2),
                      "p95_ms": round(timings[int(len(timings) * 0.95) - 1], 2),
                      "queries": len(captured.captured_queries)}))
    print(json.dumps({"bytes_per_row": round(per_row, 1), "bytes_per_service_day": round(per_row * day_rows),
                      "bytes_per_service_retained": round(per_row * retained_rows)}))

    if options.use_configured_db:
        Service.objects.filter(pk__in=[s.pk for s in services]).delete()


if __name__ == "__main__":
    main()
