"""Deploying from a Git repository in the browser: the source switch, the card building with
its elapsed time, the build log in the log viewer, then the service running from the image.

Real pieces throughout: daphne, a Celery worker that applies the build Job to the devcluster
(whose build pods print a kaniko-style log for 1.5–3 s), and the watcher that sees the Job end.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import create_project, open_deploy_modal, sign_in

pytestmark = pytest.mark.e2e

LIVE = 25_000  # ms: a worker task, a 1.5–3 s build, a watch event, a pod start


def test_it_deploys_from_a_repository_and_shows_the_build(page: Page, ale_stack, demo_login):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "builds", "Builds")

    modal = open_deploy_modal(page)
    # The image source is chosen: the repository fields are hidden until Git is picked.
    expect(modal.get_by_label("Repository URL")).to_be_hidden()
    modal.get_by_label("Git repository").check()
    expect(modal.get_by_label("Container image")).to_be_hidden()
    modal.get_by_label("Service name").fill("shop")
    modal.get_by_label("Repository URL").fill("https://github.com/acme/shop.git")
    modal.get_by_label("Branch").fill("main")
    modal.get_by_label("Path in the repository").fill("web")
    expect(modal.get_by_label("Dockerfile")).to_have_value("Dockerfile")
    modal.get_by_label("Port").fill("8000")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    expect(page.locator("dialog#modal")).to_have_count(0)

    card = page.locator(".service-card", has_text="shop")
    expect(card.locator(".status")).to_have_text(re.compile(r"^Building · \d+:\d\d$"))
    expect(card.get_by_role("link", name="Repository")).to_have_attribute(
        "href", "https://github.com/acme/shop/tree/main/web"
    )
    expect(card.get_by_role("link", name="Repository")).to_have_attribute("target", "_blank")
    # Built, then deployed from the pushed image, without a reload.
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)
    expect(card).to_contain_text("registry.local:5000/ale/")

    # The build log, in the same viewer as the running logs.
    card.get_by_role("link", name="Log view").click()
    page.get_by_role("link", name="Build logs").click()
    expect(page.locator("[data-role=build-summary]")).to_contain_text("Build #1")
    view = page.locator("[data-role=view]")
    # The viewer renders the rows in sight, the newest at the bottom: the end of the build.
    expect(view).to_contain_text("Build succeeded", timeout=LIVE)
    expect(view).to_contain_text("Pushed registry.local:5000/ale/")

    # The history on the service page.
    page.get_by_role("link", name="shop", exact=True).first.click()
    row = page.locator("tr[data-build='1']")
    expect(row).to_contain_text("Succeeded")
    expect(row).to_contain_text(username)
    expect(row.get_by_role("link", name="Build logs")).to_have_attribute("href", re.compile(r"/logs/\?build=1$"))
