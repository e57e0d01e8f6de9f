"""Opening a web service through its Access link on the bundled cluster, and a Log view that
follows a redeploy to the new pod without a reload.

Real pieces throughout: daphne, a Celery worker applying specs to the devcluster, the watcher,
and the devcluster's emulated ingress that the local cluster's Access links point at (as
`make run` sets it up).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import create_project, open_deploy_modal, sign_in

pytestmark = pytest.mark.e2e

LIVE = 20_000  # ms: a worker task, a pod start (0.3 s) and a watch event, on a busy machine
ROLLOUT = 45_000  # ms: a redeploy's new pod, the old one's shutdown and the log view's next look


def deploy(page: Page, name: str, image: str, port: str) -> None:
    modal = open_deploy_modal(page)
    modal.get_by_label("Service name").fill(name)
    modal.get_by_label("Container image").fill(image)
    modal.get_by_label("Port").fill(port)
    modal.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("dialog#modal")).to_have_count(0)
    card = page.locator(".service-card", has_text=name)
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)


def test_access_opens_the_welcome_page_of_the_service(page: Page, ale_stack, demo_login):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "access", "Access")
    deploy(page, "web", "nginx:1.27", "80")

    card = page.locator(".service-card", has_text="web")
    access = card.get_by_role("link", name="Access")
    expect(access).to_have_attribute("href", re.compile(r"^http://web-[a-z0-9]{12}\.localhost:\d+$"))
    # The bundled cluster's link works: the card has nothing to warn about.
    expect(card.locator("[data-role=access-hint]")).to_have_count(0)
    with page.context.expect_page() as opened:
        access.click()
    welcome = opened.value
    expect(welcome.get_by_role("heading", name="Welcome to nginx!")).to_be_visible(timeout=LIVE)
    expect(welcome.get_by_text("Served by pod web-")).to_be_visible()


def test_the_log_view_follows_a_redeploy_to_the_new_pod(page: Page, ale_stack, demo_login):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "follow", "Follow")
    env_url = page.url
    # A generic web image: it prints its pod's name when it starts, then a line every 2 s.
    deploy(page, "shop", "ghcr.io/acme/shop:1.2", "8080")

    page.locator(".service-card", has_text="shop").get_by_role("link", name="Log view").click()
    expect(page.locator(".log-row").first).to_contain_text("starting shop")
    first = page.locator(".log-row", has_text="starting shop").first.text_content() or ""
    old = re.search(r"pod (shop-[a-z0-9-]+)\)", first).group(1)
    expect(page.locator("select[name=pod]")).to_have_value("")
    # Set on this document only: still there at the end means no reload happened.
    page.evaluate("window.__sameDocument = true")

    # Redeploy from the environment page in another tab, while the Log view stays open.
    other = page.context.new_page()
    other.goto(env_url)
    card = other.locator(".service-card", has_text="shop")
    card.get_by_label("More actions for shop").click()
    card.get_by_role("button", name="Redeploy").click()

    marker = page.locator("[data-role=marker]")
    expect(marker).to_contain_text("Now following pod shop-", timeout=ROLLOUT)
    text = marker.text_content() or ""
    assert re.fullmatch(r"── Now following pod (shop-\S+) · revision 2 · started \S+ \S+ UTC ──", text), text
    new = re.search(r"pod (shop-\S+) ·", text).group(1)
    assert new != old
    # The old pod's last words, then the marker, then the new pod's start.
    rows = page.locator(".log-row").all_text_contents()
    at = next(i for i, row in enumerate(rows) if "Now following pod" in row)
    assert "received SIGTERM, shutting down" in rows[at - 2] and rows[at - 1].endswith("bye"), rows[: at + 1]
    # The new pod's own lines follow, and the pod list has caught up.
    expect(page.locator(".log-row", has_text=f"pod {new})")).to_have_count(1, timeout=LIVE)
    pods = page.locator("select[name=pod] option")
    expect(pods.filter(has_text=new)).to_have_count(1, timeout=LIVE)
    expect(pods.filter(has_text=old)).to_have_count(0, timeout=LIVE)
    expect(page.locator("[data-role=status]")).not_to_have_text("The log ended.")
    assert page.evaluate("window.__sameDocument") is True


def test_the_log_view_marks_a_crash_restart(page: Page, ale_stack, demo_login):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "crashes", "Crashes")
    modal = open_deploy_modal(page)
    modal.get_by_label("Service name").fill("worker")
    modal.get_by_label("Container image").fill("crash-app:1")
    modal.get_by_label("Port").fill("8080")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("dialog#modal")).to_have_count(0)

    page.locator(".service-card", has_text="worker").get_by_role("link", name="Log view").click()
    # The crashed container's traceback, the marker, then the new container's start: rows read
    # in one go, since the view scrolls on as the container keeps crashing.
    page.wait_for_function(
        """() => {
            const rows = [...document.querySelectorAll('.log-row')].map(row => row.textContent);
            return rows.some((row, i) => row.includes('Container worker restarted') && i > 0
                && rows[i - 1].includes('ConnectionError: could not connect')
                && (rows[i + 1] || '').includes('starting crash-app'));
        }""",
        timeout=ROLLOUT,
    )
    text = page.locator("[data-role=marker]").last.text_content() or ""
    assert re.fullmatch(
        r"── Container worker restarted \(restart \d+\) · pod worker-\S+ · revision 1 · started \S+ \S+ UTC ──", text
    ), text
