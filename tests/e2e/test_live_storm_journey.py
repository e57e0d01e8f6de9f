"""A big environment's page under a storm of live updates, in the browser: every card changed at
once lands, events arrive as rows on the Events tab, which keeps as many as it lists, and nothing
errs in the console (console errors fail every journey, see conftest.py).

The updates are published as the watcher publishes them (services.live, through the server's
channel layer), from `manage.py shell` against the server's database: no cluster is needed to
change 50 statuses at once.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import assert_accessible, create_project, sign_in

pytestmark = pytest.mark.e2e

LIVE = 20_000  # ms
SERVICES = 50  # under a page of cards (environments/tabs.py CARDS_PER_PAGE): all on the page

CREATE_SERVICES = """
from django.utils import timezone
from environments.models import Environment
from services.models import Service
environment = Environment.objects.get(public_id="{env}")
Service.objects.bulk_create(
    Service(environment=environment, name=f"svc-{{i}}", image="nginx:1.27", port=80, status="stopped",
            status_changed_at=timezone.now())
    for i in range({count})
)
"""

ALL_RUNNING = """
from django.utils import timezone
from services import live
from services.models import Service
Service.objects.filter(environment__public_id="{env}").update(status="running", status_changed_at=timezone.now())
live.publish_services(Service.objects.filter(environment__public_id="{env}").select_related("environment"))
"""

WRITE_EVENTS = """
from datetime import timedelta
from django.utils import timezone
from environments.models import ClusterEvent, Environment
from services import live
environment = Environment.objects.get(public_id="{env}")
start = timezone.now()
for batch in range({first}, {last}, 10):
    live.publish_events(ClusterEvent.objects.bulk_create(
        ClusterEvent(environment=environment, uid=f"uid-{{n}}", reason="Scheduled", involved_kind="Pod",
                     involved_name=f"svc-{{n}}-pod", message=f"Assigned pod number {{n}}", count={count},
                     first_seen=start, last_seen=start + timedelta(milliseconds=n))
        for n in range(batch, min(batch + 10, {last}))
    ))
"""

# The rows take the demo space's allowance, which the journeys after this one deploy from.
DELETE_SERVICES = """
from services.models import Service
Service.objects.filter(environment__public_id="{env}").delete()
"""

BUMP_EVENT = """
from django.utils import timezone
from environments.models import ClusterEvent
from services import live
event = ClusterEvent.objects.get(environment__public_id="{env}", uid="uid-{n}")
event.count, event.last_seen = 7, timezone.now()
event.save()
live.publish_events([event])
"""


def test_cards_and_events_update_live_in_a_storm(page: Page, ale_server, demo_login):
    username, password = demo_login
    sign_in(page, ale_server.url(""), username, password)
    env = re.search(r"/environments/([a-z0-9]{12})/", create_project(page, "storm", "Storm")).group(1)
    ale_server.manage("shell", "-c", CREATE_SERVICES.format(env=env, count=SERVICES))
    try:
        storm(page, ale_server, env)
    finally:
        ale_server.manage("shell", "-c", DELETE_SERVICES.format(env=env))


def storm(page: Page, ale_server, env: str) -> None:
    page.reload()
    expect(page.locator(".service-card")).to_have_count(SERVICES)
    page.wait_for_function("() => document.querySelector('.env-live') && window.htmx")

    # Every card changes at once: each lands, no card twice.
    page.wait_for_timeout(500)  # the socket open
    ale_server.manage("shell", "-c", ALL_RUNNING.format(env=env))
    expect(page.locator('.service-card[data-status="running"]')).to_have_count(SERVICES, timeout=LIVE)
    expect(page.locator(".service-card")).to_have_count(SERVICES)
    expect(page.locator(".service-card", has_text="svc-7").locator(".status")).to_have_text("Running")
    assert_accessible(page, "the Information tab after a storm of cards")

    # The Events tab, empty, then more events than it lists, in watcher-sized batches.
    page.get_by_role("navigation", name="Environment").get_by_role("link", name="Events").click()
    expect(page.get_by_text("No events yet")).to_be_visible()
    page.wait_for_timeout(500)  # the socket told which tab the page shows
    ale_server.manage("shell", "-c", WRITE_EVENTS.format(env=env, first=0, last=230, count=1))
    rows = page.locator("#event-list tr.event")
    expect(rows.first).to_contain_text("Assigned pod number 229", timeout=LIVE)
    expect(rows).to_have_count(200)  # ClusterEvent.objects.recent: as many as the tab lists
    expect(page.get_by_text("No events yet")).to_be_hidden()
    expect(rows.last).to_contain_text("Assigned pod number 30")

    # A repeat bumps its row's count and brings it to the top, without a second row.
    ale_server.manage("shell", "-c", BUMP_EVENT.format(env=env, n=100))
    expect(rows.first).to_contain_text("Assigned pod number 100", timeout=LIVE)
    expect(rows.first.locator(".event-count")).to_have_text("7")
    expect(rows).to_have_count(200)
    expect(page.locator("#event-list td.event-message", has_text=re.compile(r"^Assigned pod number 100$"))).to_have_count(1)
    assert_accessible(page, "the Events tab after a storm of events")

    # What the page shows live is what it shows loaded.
    page.reload()
    expect(rows).to_have_count(200)
    expect(rows.first).to_contain_text("Assigned pod number 100")
