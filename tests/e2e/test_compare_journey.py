"""Compare and promote in the browser: staging differs from main, the page shows how, a
promote applies staging to main and main's cards change. The Settings tab also loads the
project's webhook section. A real server, Celery worker, devcluster and watcher throughout."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import create_project, sign_in
from tests.e2e.test_travel_journey import create_environment, drop

pytestmark = pytest.mark.e2e

MAIN_FILE = """apiVersion: ale/v1
kind: Environment
spec:
  services:
    - name: web
      kind: web
      image: nginx:1.27
      port: 80
      env:
        - {name: MODE, value: production}
      resources: {cpu: 0.1, memory: 64Mi, replicas: 1}
"""

STAGING_FILE = """apiVersion: ale/v1
kind: Environment
spec:
  services:
    - name: web
      kind: web
      image: nginx:1.28
      port: 80
      env:
        - {name: MODE, value: staging}
      resources: {cpu: 0.1, memory: 64Mi, replicas: 1}
    - name: worker
      kind: web
      image: busybox:1.36
      port: 8080
      resources: {cpu: 0.1, memory: 64Mi, replicas: 1}
"""


EXTRA_SERVICE = """    - name: cache
      kind: tcp
      image: redis:7
      port: 6379
      resources: {cpu: 0.1, memory: 64Mi, replicas: 1}
"""

# The space of the project `promo` may run no more services than it runs now.
FILL_ALLOCATION = """
from services.models import Service
from spaces.models import Project, ResourceAllocation
space = Project.objects.get(name="promo").space
running = Service.objects.filter(environment__project__space=space, desired_state="running").count()
allocation = ResourceAllocation.objects.filter(space=space).first()
print("none" if allocation is None else allocation.max_running_services)
ResourceAllocation.objects.update_or_create(space=space, defaults={"max_running_services": running})
"""

# The journeys share one server and the demo space: give back what this one took.
GIVE_BACK = """
from services.actions import stop_service
from services.models import Service
from spaces.models import Project, ResourceAllocation
space = Project.objects.get(name="promo").space
previous = %r
if previous == "none":
    ResourceAllocation.objects.filter(space=space).delete()
else:
    ResourceAllocation.objects.filter(space=space).update(max_running_services=None if previous == "None" else int(previous))
for service in Service.objects.filter(environment__project__name="promo", desired_state="running"):
    stop_service(None, service)
"""


def apply_file(page: Page, text: str, created: int, changed: int) -> None:
    drop(page, ".env-page", "env.yaml", text)
    modal = page.locator("dialog#modal")
    expect(modal).to_be_visible()
    modal.get_by_role("button", name="Apply").click()
    expect(page.get_by_text(f"YAML applied: {created} created, {changed} changed")).to_be_visible()


def test_it_compares_staging_with_main_and_promotes_it(page: Page, ale_stack, demo_login):
    sign_in(page, ale_stack.url(""), *demo_login)
    create_project(page, "promo", "Promo")
    apply_file(page, MAIN_FILE, 1, 0)
    expect(page.locator(".service-card")).to_have_count(1)

    create_environment(page, "staging")
    # The new environment's page, loaded (its drop zone ready) before the file is dropped.
    expect(page.get_by_text("No services yet")).to_be_visible()
    apply_file(page, STAGING_FILE, 2, 0)

    page.get_by_role("link", name="Settings").click()
    # The webhook section loads into the tab.
    expect(page.locator("#webhook")).to_contain_text("A webhook lets your Git host tell ale about pushes")
    compare = page.locator("#compare")
    compare.get_by_label("Compare with…").select_option(label="main")
    compare.get_by_role("button", name="Compare").click()

    expect(page.get_by_role("heading", name="Compare staging with main")).to_be_visible()
    expect(page.locator("[data-only-in-a]")).to_contain_text("worker")
    diff = page.locator('[data-service-diff="web"]')
    expect(diff).to_contain_text("nginx:1.28")
    expect(diff).to_contain_text("nginx:1.27")
    expect(diff).to_contain_text("Variable MODE")
    promote = page.locator("[data-promote]")
    expect(promote).to_contain_text("1 to create · 1 to change · 0 unchanged")
    promote.get_by_role("button", name="Promote staging → main").click()

    expect(page.get_by_text("Promoted staging to main: 1 created, 1 changed, 0 unchanged.")).to_be_visible()
    expect(page.locator(".env-badge")).to_contain_text("main")
    cards = page.locator(".service-card")
    expect(cards).to_have_count(2)
    web = page.locator(".service-card", has=page.get_by_role("heading", name="web", exact=True))
    expect(web).to_contain_text("nginx:1.28")
    expect(page.locator(".service-card", has=page.get_by_role("heading", name="worker", exact=True))).to_be_visible()

    # staging grows a third service; with the space's allocation full, promoting it again is
    # refused and main stays as it is.
    page.locator("[data-env-selector] summary").first.click()
    page.locator("[data-env-selector]").get_by_role("link", name="staging").click()
    expect(page.locator(".env-badge")).to_contain_text("staging")
    apply_file(page, STAGING_FILE.replace("    - name: worker", EXTRA_SERVICE + "    - name: worker"), 1, 0)
    # The last line: shell prints a note about its automatic imports first.
    previous = ale_stack.manage("shell", "-c", FILL_ALLOCATION).strip().splitlines()[-1]
    try:
        refused_promote_leaves_main_alone(page)
    finally:
        ale_stack.manage("shell", "-c", GIVE_BACK % previous)


def refused_promote_leaves_main_alone(page: Page) -> None:
    page.get_by_role("link", name="Settings").click()
    page.locator("#compare").get_by_label("Compare with…").select_option(label="main")
    page.locator("#compare").get_by_role("button", name="Compare").click()
    expect(page.locator("[data-promote]")).to_contain_text("1 to create · 0 to change · 2 unchanged")
    page.locator("[data-promote]").get_by_role("button", name="Promote staging → main").click()
    expect(page.get_by_text("Nothing was promoted:")).to_be_visible()
    expect(page.get_by_text("Running services")).to_be_visible()
    page.get_by_role("link", name="← Settings of staging").click()
    page.locator("[data-env-selector] summary").first.click()
    page.locator("[data-env-selector]").get_by_role("link", name="main").click()
    expect(page.locator(".env-badge")).to_contain_text("main")
    expect(page.locator(".service-card")).to_have_count(2)
