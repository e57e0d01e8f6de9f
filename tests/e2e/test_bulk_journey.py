"""Stop All, then Start All, of an environment: the answer comes at once with a progress banner,
and the cards reach Stopped, then Running, over the page's socket. A real server, Celery
worker, devcluster and watcher throughout."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import assert_accessible, create_project, sign_in
from tests.e2e.test_travel_journey import drop

pytestmark = pytest.mark.e2e

LIVE = 30_000  # ms: a worker task per service, pods started or stopped, the watcher's events

SHOP = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n" + "".join(
    f"    - {{name: {name}, kind: web, image: 'nginx:1.27', port: 80, resources: {{cpu: 0.1, memory: 64Mi}}}}\n"
    for name in ("web", "api", "admin")
)


def choose_in_selector(page: Page, name: str) -> None:
    """The selector's menu item, opening the menu unless it is still open from the last one."""
    button = page.get_by_role("button", name=re.compile(name))
    if not button.is_visible():
        page.locator("[data-env-selector] summary").first.click()
    button.click()


def expect_cards(page: Page, status: str) -> None:
    cards = page.locator(".service-card")
    expect(cards).to_have_count(3)
    for index in range(3):
        expect(cards.nth(index).locator(".status")).to_have_text(status, timeout=LIVE)


def test_it_stops_and_starts_a_whole_environment_with_live_progress(page: Page, ale_stack, demo_login):
    sign_in(page, ale_stack.url(""), *demo_login)
    create_project(page, "bulk", "Bulk")
    drop(page, ".env-page", "shop.yaml", SHOP)
    page.locator("dialog#modal").get_by_role("button", name="Apply").click()
    expect(page.get_by_text("YAML applied: 3 created, 0 changed, 0 unchanged.")).to_be_visible()
    expect_cards(page, "Running")
    banner = page.locator("#environment-progress")
    expect(banner).to_be_empty()
    # Set on this document only: still there at the end means no reload happened.
    page.evaluate("window.__sameDocument = true")

    choose_in_selector(page, "Stop All")
    expect(page.get_by_text("Stopping 3 services.")).to_be_visible()
    # The menu closes once the action is sent: its answer is on the page.
    expect(page.locator("[data-env-selector]")).not_to_have_attribute("open", "")
    # The banner counts the services as the cluster stops them, then says they all are.
    expect(banner).to_have_text(re.compile(r"Stopping [0-3] of 3 services…|Stopped 3 services\."))
    expect(banner).to_have_attribute("role", "status")
    expect_cards(page, "Stopped")
    expect(banner).to_have_text("Stopped 3 services.", timeout=LIVE)
    assert_accessible(page, "the environment page after Stop All")

    choose_in_selector(page, "Start All")
    expect(page.get_by_text("Starting 3 services.")).to_be_visible()
    expect(banner).to_have_text(re.compile(r"Starting [0-3] of 3 services…|Started 3 services\."))
    expect_cards(page, "Running")
    expect(banner).to_have_text("Started 3 services.", timeout=LIVE)
    # Said for a few seconds, then gone; a reload shows no banner either.
    expect(banner).to_be_hidden(timeout=10_000)
    assert page.evaluate("window.__sameDocument") is True
    page.reload()
    expect(page.locator("#environment-progress")).to_be_empty()
    expect_cards(page, "Running")
