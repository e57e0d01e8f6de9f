"""Deploying a service in the browser: the modal, the live card, Stop and Start.

Real pieces throughout: daphne, a Celery worker applying the spec to the devcluster, and the
watcher turning what the cluster does into the card the page's socket receives.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import create_project, open_deploy_modal, sign_in

pytestmark = pytest.mark.e2e

LIVE = 20_000  # ms: a worker task, a pod start (0.3 s) and a watch event, on a busy machine


def test_it_deploys_a_service_and_watches_it_run_stop_and_start(page: Page, ale_stack, demo_login):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "deploys", "Deploys")
    expect(page.get_by_text("No services yet")).to_be_visible()
    # Set on this document only: still there at the end means no reload happened.
    page.evaluate("window.__sameDocument = true")

    # The deploy modal refuses bad input field by field, and keeps what was typed.
    modal = open_deploy_modal(page)
    modal.get_by_label("Service name").fill("Web_1")
    modal.get_by_label("Container image").fill("nginx:1.27")
    modal.get_by_label("Port").fill("0")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    expect(modal.locator(".has-error")).to_have_count(2)
    expect(modal.get_by_text("A port is a whole number from 1 to 65535.")).to_be_visible()
    expect(modal.get_by_label("Container image")).to_have_value("nginx:1.27")

    modal.get_by_label("Service name").fill("web")
    modal.get_by_label("Port").fill("80")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("dialog#modal")).to_have_count(0)

    # The card is there at once, then turns Running from the cluster, without a reload.
    card = page.locator(".service-card", has_text="web")
    expect(card).to_have_count(1)
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)
    expect(card.locator(".service-card-replicas")).to_have_text("1 / 1 ready")
    expect(card.get_by_role("link", name="Access")).to_have_attribute("href", re.compile(r"^http://web-"))
    expect(card).to_contain_text(f"Deployed by {username}")

    card.get_by_role("button", name="Stop").click()
    expect(card.locator(".status")).to_have_text("Stopped", timeout=LIVE)
    expect(card.locator(".service-card-replicas")).to_have_text("0 / 0 ready")

    card.get_by_role("button", name="Start").click()
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)
    expect(page.locator(".service-card")).to_have_count(1)
    assert page.evaluate("window.__sameDocument") is True


def test_it_gives_a_database_one_replica_and_a_disk_that_its_deletion_warns_about(page: Page, ale_stack, demo_login):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "databases", "Databases")

    modal = open_deploy_modal(page)
    modal.get_by_label("Service name").fill("db")
    modal.get_by_label("Kind").select_option("tcp")
    modal.get_by_label("Container image").fill("postgres:16")
    modal.get_by_label("Port").fill("5432")
    modal.get_by_label("Disk").fill("1Gi")
    modal.get_by_label("Replicas").fill("2")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    # Its volume attaches to one pod at a time: two replicas are refused, on that field.
    expect(modal.get_by_text("A service with a disk runs one replica")).to_be_visible()
    modal.get_by_label("Replicas").fill("1")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("dialog#modal")).to_have_count(0)

    card = page.locator(".service-card", has_text="db")
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)
    expect(card.get_by_role("button", name=re.compile("Copy Address"))).to_contain_text("db:5432")
    # The disk counts against the space from now on, running or stopped.
    expect(page.locator(".sidebar")).to_contain_text("1 GiB / 100 GiB")

    card.get_by_role("link", name="db", exact=True).click()
    expect(page.get_by_text("1 GiB disk at /data")).to_be_visible()
    page.get_by_role("link", name="Delete").click()
    expect(page.get_by_text("Its disk (1 GiB, mounted at /data) is deleted too, with all the data on it.")).to_be_visible()
