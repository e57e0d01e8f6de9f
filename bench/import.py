"""Applying a YAML file of N services to an empty environment, then the same file again.

    python bench/import.py --services 200

Builds a file of N image services (a few with variables, commands, a disk, custom domains),
then, through Django's test client, does what a browser does: posts it to the preview, posts the
confirm form. The confirm request is timed and its queries counted: it validates the file again
and applies it, so it is the whole upload path. Then preview and confirm again with the same
file, and count what changed (services whose generation moved, revisions written): it must be 0.
Prints {"services", "seconds", "queries", "reapply_changes"}.

It runs on a throwaway SQLite file unless --use-configured-db is given (then DATABASE_URL's
database is used, and the rows it creates are deleted afterwards). The reconcile task the apply
enqueues goes to a queue of the bench's own on the configured Redis, deleted at the end, so no
worker acts on it. Numbers only: it never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_file(size: int) -> bytes:
    lines = ["apiVersion: ale/v1", "kind: Environment", "metadata:", "  name: bench", "spec:", "  services:"]
    for i in range(size):
        name = f"svc-{i:04d}"
        lines += [f"    - name: {name}", "      kind: " + ("tcp" if i % 10 == 0 else "web")]
        lines += [f"      image: registry.example.com/team/app-{i % 7}:v{i % 3}", f"      port: {8000 + i % 50}"]
        if i % 4 == 0:
            lines += ["      command: [sh, -c]", "      args: ['exec ./serve --port $PORT']"]
        lines += ["      env:", "        - {name: MODE, value: production}", "        - {name: DATABASE_URL, secret: DATABASE_URL}"]
        disk = "\n        disk: 1Gi" if i % 10 == 0 else ""
        # A service with a disk runs one replica.
        replicas = 1 if disk else 1 + i % 3
        lines += [f"      resources:\n        capacity: {'spot' if i % 5 == 0 else 'on_demand'}\n        cpu: 0.5\n        memory: 512Mi{disk}\n        replicas: {replicas}"]
        if i % 10 != 0:
            lines += ["      healthCheckPath: /healthz"]
        if i % 25 == 1:
            lines += [f"      customDomains: [{name}.bench.example.com]"]
        lines += ["      state: running"]
    lines += ["  secrets: [DATABASE_URL]"]
    return ("\n".join(lines) + "\n").encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--use-configured-db", action="store_true")
    options = parser.parse_args()

    if not options.use_configured_db:
        scratch = Path(tempfile.mkdtemp(prefix="ale-bench-"))
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
        os.environ["ALE_VAR_DIR"] = str(scratch)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ale_site.settings")
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    os.environ.setdefault("ALE_SECRET_KEYS", "YmVuY2gtb25seS1ub3QtYS1zZWNyZXQtMDAwMDAwMDA=")
    queue = f"ale-bench-{uuid.uuid4().hex[:8]}"
    os.environ["CELERY_QUEUE"] = queue

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    settings.SECURE_SSL_REDIRECT = False
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if not options.use_configured_db:
        call_command("migrate", verbosity=0, interactive=False)

    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    # One connection for the whole run, so that its query log is not lost between requests.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        print(json.dumps(measure(options.services)), flush=True)
    finally:
        import redis

        redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(queue)


def measure(size: int) -> dict[str, float | int]:
    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from services.models import Revision, Service
    from spaces.actions import create_project, ensure_default_space
    from tests.factories import local_cluster

    user = get_user_model().objects.create_user(username=f"bench-{uuid.uuid4().hex[:8]}", password="x")
    space = ensure_default_space(user)
    project = create_project(acting_user=user, space=space, name=f"b{uuid.uuid4().hex[:8]}", display_name="", cluster=local_cluster())
    environment = project.environments.get()
    # Far beyond any default profile: the bench measures the apply, not a refusal by the quota.
    from spaces.models import LIMIT_FIELDS, ResourceAllocation

    ResourceAllocation.objects.update_or_create(space=space, defaults={field: 10_000_000 for field in LIMIT_FIELDS})
    client = Client(HTTP_HX_REQUEST="true", secure=True)
    client.force_login(user)
    data = build_file(size)
    preview_url = reverse("environments:yaml-preview", args=[environment.public_id])
    apply_url = reverse("environments:yaml-apply", args=[environment.public_id])

    def apply() -> tuple[float, int]:
        body = client.post(preview_url, {"file": SimpleUploadedFile("bench.yaml", data)}).content.decode()
        if "data-yaml-apply" not in body:
            raise SystemExit(f"the preview refused the file: {body[:2000]}")
        fields = {name: re.search(rf'name="{name}" value="([^"]+)"', body).group(1) for name in ("yaml", "token")}
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.post(apply_url, fields)
            seconds = time.perf_counter() - started
        if response.status_code != 200 or "HX-Redirect" not in response:
            raise SystemExit(f"the apply failed: {response.status_code} {response.content[:2000]!r}")
        return seconds, len(queries)

    try:
        seconds, queries = apply()
        if Service.objects.filter(environment=environment).count() != size:
            raise SystemExit("the apply did not create every service")
        generations = dict(Service.objects.filter(environment=environment).values_list("pk", "generation"))
        revisions = Revision.objects.filter(service__environment=environment).count()
        apply()
        after = dict(Service.objects.filter(environment=environment).values_list("pk", "generation"))
        changes = sum(1 for pk, generation in after.items() if generations.get(pk) != generation)
        changes += Revision.objects.filter(service__environment=environment).count() - revisions
    finally:
        Service.objects.filter(environment=environment).delete()
        project.delete()
        user.delete()
    return {"services": size, "seconds": round(seconds, 3), "queries": queries, "reapply_changes": changes}


if __name__ == "__main__":
    main()
