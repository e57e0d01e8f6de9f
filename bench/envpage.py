"""Server time and query count of the environment page for N services.

    python bench/envpage.py --services 10,500

Creates, per size, an environment holding N services (rows written directly, no cluster), then
requests its Information tab through Django's test client: 3 warm-up requests, then 30 timed
ones. Prints one JSON line per size: {"services", "queries", "p50_ms", "p95_ms"}.

It runs on a throwaway SQLite file unless --use-configured-db is given (then DATABASE_URL's
database is used, and the rows it creates are deleted afterwards). Numbers only: it never fails
on time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from support import setup_django  # noqa: E402  (bench/ is the script's own directory)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", default="10,500", help="comma-separated sizes")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--use-configured-db", action="store_true")
    options = parser.parse_args()

    setup_django(use_configured_db=options.use_configured_db)

    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    # As under the test runner: one connection for the whole run, so that its query log (what
    # "queries" counts) is not dropped with a connection closed between requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)

    for size in (int(value) for value in options.services.split(",")):
        print(json.dumps(measure(size, options.requests)), flush=True)


def measure(size: int, requests: int) -> dict[str, float | int]:
    from django.db import connection, transaction
    from django.test import Client
    from django.urls import reverse
    from django.utils import timezone

    from django.contrib.auth import get_user_model

    from environments.models import Environment
    from services.models import Revision, Service
    from spaces.models import Membership, Project, Space
    from tests.factories import local_cluster

    suffix = f"{size}-{time.time_ns() % 10**6}"
    # Rows written directly, not through the actions: no reconcile task is ever enqueued.
    with transaction.atomic():
        user = get_user_model().objects.create_user(username=f"bench{suffix}", password="bench")
        space = Space.objects.create(name=f"bench{suffix}"[:20])
        Membership.objects.create(space=space, user=user, role=Membership.Role.OWNER)
        project = Project.objects.create(space=space, name=f"bench{size}", display_name="Bench", created_by=user)
        environment = Environment.objects.create(project=project, name="main", cluster=local_cluster(), created_by=user)
        project.default_environment = environment
        project.save(update_fields=["default_environment"])
        now = timezone.now()
        statuses = ["running", "deploying", "stopped", "failed"]
        services = Service.objects.bulk_create(
            Service(
                environment=environment,
                name=f"svc-{index}",
                kind="tcp" if index % 3 == 0 else "web",
                image=f"registry.example.com/team/app-{index}:v{index % 7}",
                port=5432 if index % 3 == 0 else 8080,
                capacity="spot" if index % 5 == 0 else "on_demand",
                repository_url="https://github.com/acme/app.git" if index % 4 == 0 else "",
                status=statuses[index % 4],
                status_reason="Back-off restarting the crashed container." if index % 4 == 3 else "",
                ready_replicas=1 if index % 4 == 0 else 0,
                deployed_by=user,
                deployed_at=now,
                status_changed_at=now,
            )
            for index in range(size)
        )
        Revision.objects.bulk_create(
            Revision(service=service, number=1, spec=service.snapshot(), created_by=user) for service in services
        )

    client = Client()
    client.force_login(user)
    url = reverse("environments:detail", args=[environment.public_id])
    for _ in range(3):
        warm = client.get(url, secure=True)
        if warm.status_code != 200:
            raise SystemExit(f"{url} answered {warm.status_code}: {warm.content[:500]!r}")
    # Counted by an execute wrapper: the debug cursor a query log needs does not survive the
    # connection handling of a request outside the test runner.
    queries: list[str] = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url, secure=True)
    # The tab renders the first page of cards; the rest load as the grid scrolls into view.
    from environments.tabs import CARDS_PER_PAGE

    assert response.content.decode().count('class="card service-card"') == min(size, CARDS_PER_PAGE)
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        client.get(url, secure=True)
        timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {
        "services": size,
        "queries": len(queries),
        "p50_ms": round(statistics.median(timings), 1),
        "p95_ms": round(timings[min(len(timings) - 1, int(len(timings) * 0.95))], 1),
    }


if __name__ == "__main__":
    main()
