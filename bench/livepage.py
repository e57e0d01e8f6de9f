"""What a storm of live updates costs the environment page: websocket messages and bytes, and
the longest task on the page's main thread.

    python bench/livepage.py --services 300

Creates an environment of N services (rows written directly, no cluster) on a scratch SQLite
file, serves it with daphne (Redis from REDIS_URL, a channel prefix of its own) and opens it in
Chromium twice: one page on the Information tab, one on the Events tab, every card loaded.
Then, publishing through the channel layer as the watcher does:

- a storm: each service changes status `--changes` times, in batches of 10 (a watcher batch),
  and `--services` events are written one batch of 10 at a time;
- a burst: every card changes status in one publish, as a Start All's first batch does.

BENCH_TRACE=<file> writes a Chromium trace of the burst there. Prints one JSON line: messages and bytes each page received during the storm, the longest long
task (PerformanceObserver "longtask") during the burst and the time until every card showed the
new status. Numbers only: it never fails on time.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STATUSES = ["deploying", "running", "failed", "stopping", "stopped"]

# Counts what the page's websocket receives, before any page script opens one.
COUNT_SOCKET = """
window.__ws = {messages: 0, bytes: 0, sockets: 0};
const Native = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new Native(...args);
  window.__ws.sockets += 1;
  socket.addEventListener("message", (event) => {
    window.__ws.messages += 1;
    window.__ws.bytes += new Blob([event.data]).size;
  });
  return socket;
};
Object.assign(window.WebSocket, Native);
window.WebSocket.prototype = Native.prototype;
window.__longtasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longtasks.push(entry.duration);
}).observe({type: "longtask", buffered: true});
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def setup(scratch: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{scratch / 'bench.sqlite3'}",
        "ALE_VAR_DIR": str(scratch),
        "DEBUG": "false",
        "SECRET_KEY": "bench-only-not-a-secret",
        "ALE_SECRET_KEYS": "YmVuY2gtb25seS1ub3QtYS1zZWNyZXQtMDAwMDAwMDA=",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "CHANNELS_PREFIX": f"ale-bench-live-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "STATIC_ROOT": str(scratch / "static"),
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "ale_site.settings",
    }
    os.environ.update(env)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    call_command("migrate", verbosity=0, interactive=False)
    call_command("collectstatic", verbosity=0, interactive=False)
    return env


def make_environment(size: int):
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from django.utils import timezone

    from environments.models import Environment
    from services.models import Service
    from spaces.models import Membership, Project, Space
    from tests.factories import local_cluster

    with transaction.atomic():
        user = get_user_model().objects.create_user(username="bench", password="bench")
        space = Space.objects.create(name="bench")
        Membership.objects.create(space=space, user=user, role=Membership.Role.OWNER)
        project = Project.objects.create(space=space, name="bench", display_name="Bench", created_by=user)
        environment = Environment.objects.create(project=project, name="main", cluster=local_cluster(), created_by=user)
        project.default_environment = environment
        project.save(update_fields=["default_environment"])
        now = timezone.now()
        Service.objects.bulk_create(
            Service(environment=environment, name=f"svc-{i}", image=f"registry.example.com/app-{i}:v1", port=8080,
                    status="stopped", deployed_by=user, deployed_at=now, status_changed_at=now)
            for i in range(size)
        )
    return user, environment


def services_of(environment):
    from services.models import Service

    return list(Service.objects.filter(environment=environment).select_related(
        "environment__project__space", "environment__cluster", "deployed_by").order_by("pk"))


def change(services, status: str) -> None:
    from django.utils import timezone

    from services import live
    from services.models import Service

    now = timezone.now()
    for service in services:
        service.status, service.status_changed_at = status, now
    Service.objects.bulk_update(services, ["status", "status_changed_at"])
    live.publish_services(services)


def write_events(environment, start: int, count: int) -> None:
    from django.utils import timezone

    from environments.models import ClusterEvent
    from services import live

    now = timezone.now()
    rows = ClusterEvent.objects.bulk_create(
        ClusterEvent(environment=environment, uid=f"uid-{start + i}", reason="Scheduled",
                     message=f"Successfully assigned pod {start + i} to node devcluster", involved_kind="Pod",
                     involved_name=f"svc-{start + i}-abc", first_seen=now, last_seen=now)
        for i in range(count)
    )
    if hasattr(live, "publish_events"):
        live.publish_events(rows)
    else:
        live.publish_event_list(environment)


# Publishing uses async_to_sync, which refuses the thread where Playwright's loop runs: the
# writes and publishes happen on a thread of their own (one, so one database connection).
WRITER = ThreadPoolExecutor(max_workers=1)


def on_writer(function, *args) -> None:
    WRITER.submit(function, *args).result()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=300)
    parser.add_argument("--changes", type=int, default=4)
    options = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="ale-bench-live-"))
    env = setup(scratch)
    user, environment = make_environment(options.services)
    from django.test import Client

    client = Client()
    client.force_login(user)
    cookie = client.cookies["sessionid"].value

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "ale_site.asgi:application"],
        cwd=ROOT, env=env, stdout=open(scratch / "daphne.log", "wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    # Playwright's sync API runs an event loop in this thread; the bench's own queries are
    # plain synchronous calls between its steps.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(base + "/login/", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print(json.dumps(run(base, cookie, environment, options)), flush=True)
    finally:
        server.terminate()
        server.wait(timeout=10)


def open_page(browser, base: str, cookie: str, path: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_cookies([{"name": "sessionid", "value": cookie, "url": base}])
    context.add_init_script(COUNT_SOCKET)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and print("console:", message.text, file=sys.stderr))
    page.on("pageerror", lambda error: print("pageerror:", error, file=sys.stderr))
    page.goto(base + path)
    return page


def run(base: str, cookie: str, environment, options) -> dict:
    from playwright.sync_api import sync_playwright

    size = options.services
    services = WRITER.submit(services_of, environment).result()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=os.environ.get("ALE_CHROMIUM", "/usr/bin/chromium"),
                                             args=["--no-sandbox", "--disable-gpu"])
        information = open_page(browser, base, cookie, f"/environments/{environment.public_id}/")
        events = open_page(browser, base, cookie, f"/environments/{environment.public_id}/events/")
        # Every card on the page: the grid loads further pages as its end scrolls into view.
        for _ in range(50):
            if information.locator("[data-more-services]").count() == 0:
                break
            information.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
            information.wait_for_timeout(400)
        assert information.locator(".service-card").count() == size
        for page in (information, events):
            page.wait_for_function("() => window.__ws.sockets > 0")
            page.wait_for_timeout(1000)  # the socket open and told which tab it shows
            page.evaluate("() => { window.__ws.messages = 0; window.__ws.bytes = 0; }")

        # The storm: status changes in watcher-sized batches, events among them.
        batch, written = 10, 0
        for status in STATUSES[: options.changes]:
            for start in range(0, size, batch):
                on_writer(change, services[start : start + batch], status)
                time.sleep(0.01)
            # A round's share of the events, in watcher-sized batches too.
            for _ in range(0, -(-size // options.changes), batch):
                count = min(batch, size - written)
                if count > 0:
                    on_writer(write_events, environment, written, count)
                    written += count
        information.wait_for_timeout(2000)
        storm = {
            name: page.evaluate("() => window.__ws")
            for name, page in (("information", information), ("events", events))
        }
        rows_shown = events.locator("#event-list tr.event").count()

        # The burst: every card at once.
        information.evaluate("() => { window.__longtasks = []; }")
        information.wait_for_timeout(500)
        if os.environ.get("BENCH_TRACE"):
            browser.start_tracing(page=information, path=os.environ["BENCH_TRACE"], categories=["devtools.timeline", "blink", "v8.execute"])
        started = time.monotonic()
        on_writer(change, services, "running")
        information.wait_for_function(
            f"() => document.querySelectorAll('.service-card[data-status=running]').length === {size}", timeout=60000
        )
        all_running_s = time.monotonic() - started
        information.wait_for_timeout(1000)
        longtasks = information.evaluate("() => window.__longtasks")
        if os.environ.get("BENCH_TRACE"):
            browser.stop_tracing()
        browser.close()
    return {
        "services": size,
        "status_changes": size * options.changes,
        "events": written,
        "information_ws_messages": storm["information"]["messages"],
        "information_ws_bytes": storm["information"]["bytes"],
        "events_ws_messages": storm["events"]["messages"],
        "events_ws_bytes": storm["events"]["bytes"],
        "event_rows_shown": rows_shown,
        "sockets_per_page": storm["information"]["sockets"],
        "burst_longest_task_ms": round(max(longtasks, default=0), 1),
        "burst_long_tasks": len(longtasks),
        "burst_all_cards_s": round(all_running_s, 2),
    }


if __name__ == "__main__":
    main()
