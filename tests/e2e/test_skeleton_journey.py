from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from environments.colors import PALETTE
from tests.e2e.steps import assert_accessible

pytestmark = pytest.mark.e2e

ENV_URL = re.compile(r"/environments/[a-z0-9]{12}/$")


def _rgb(hex_color: str) -> str:
    red, green, blue = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgb({red}, {green}, {blue})"


def test_it_walks_from_sign_in_to_deleting_an_environment(page: Page, ale_stack, demo_login):
    # The stack (worker, watcher, devcluster) carries out the deletion of the namespace.
    ale_server = ale_stack
    username, password = demo_login

    # Sign in.
    page.goto(ale_server.url("/"))
    expect(page).to_have_url(re.compile(r"/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()

    # Create a project: the browser lands on its main environment.
    page.get_by_label("Project Name").fill("journey")
    page.get_by_label("Display Name").fill("Voyage 旅")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(ENV_URL)
    main_url = page.url
    expect(page.get_by_role("heading", level=1)).to_have_text("Voyage 旅")
    expect(page.locator(".env-handle")).to_have_text("@demo/journey")
    expect(page.locator(".env-badge")).to_contain_text("main")
    expect(page.get_by_text("No services yet")).to_be_visible()
    assert_accessible(page, "the Information tab")

    # Add an environment from the selector.
    selector = page.locator("[data-env-selector]")
    selector.locator("summary").first.click()
    page.get_by_text("Create new environment").click()
    page.locator("#env-create-form").get_by_label("Environment Name").fill("staging")
    page.locator("#env-create-form").get_by_role("button", name="Create").click()
    expect(page).not_to_have_url(main_url)
    expect(page).to_have_url(ENV_URL)
    staging_url = page.url
    expect(page.locator(".env-badge")).to_contain_text("staging")
    # The page and the selector wear staging's colour; main has none.
    expect(page.locator(".env-page")).to_have_css("border-top-color", _rgb(PALETTE[0]))
    selector.locator("summary").first.click()
    staging_option = page.locator("a.env-option", has_text="staging")
    main_option = page.locator("a.env-option", has_text="main")
    expect(staging_option.locator(".dot")).to_have_css("background-color", _rgb(PALETTE[0]))
    expect(main_option.locator(".dot")).to_have_css("background-color", "rgba(0, 0, 0, 0)")
    expect(staging_option).to_have_attribute("aria-current", "page")
    page.keyboard.press("Escape")
    expect(selector).not_to_have_attribute("open", "")

    # Switch to main with the keyboard: focus the selector, arrow down to main, Enter.
    selector.locator("summary").first.focus()
    page.keyboard.press("Enter")
    expect(selector).to_have_attribute("open", "")
    page.keyboard.press("ArrowDown")  # the current environment
    page.keyboard.press("ArrowUp")  # main, listed first
    expect(main_option).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(main_url)
    expect(page.locator(".env-badge")).to_contain_text("main")

    # And back to staging with the mouse.
    selector.locator("summary").first.click()
    page.locator("a.env-option", has_text="staging").click()
    expect(page).to_have_url(staging_url)

    # Tabs load in place and keep real URLs.
    page.get_by_role("link", name="Events").click()
    expect(page).to_have_url(staging_url + "events/")
    expect(page.get_by_text("No events yet")).to_be_visible()
    assert_accessible(page, "the Events tab")
    page.get_by_role("link", name="Settings").click()
    expect(page).to_have_url(staging_url + "settings/")
    expect(page.get_by_role("heading", name="Environment Information")).to_be_visible()
    expect(page.get_by_role("heading", name="Project Information")).to_be_visible()
    assert_accessible(page, "the Settings tab")
    page.screenshot(path="/tmp/ale-settings.png", full_page=True)

    # Set it as the default: opening the project now loads staging.
    page.get_by_role("button", name="Set as Default Environment").click()
    expect(page.get_by_text("This is the default environment")).to_be_visible()
    page.goto(ale_server.url("/@demo/journey/"))
    expect(page).to_have_url(staging_url)
    page.screenshot(path="/tmp/ale-environment.png")

    # Delete it: a wrong name is refused, the right one deletes it and main opens again.
    page.get_by_role("link", name="Settings").click()
    confirm = page.get_by_label("Type staging to confirm")
    confirm.fill("wrong")
    page.get_by_role("button", name="Delete environment").click()
    expect(page.get_by_text("Type staging exactly to confirm.")).to_be_visible()
    page.get_by_label("Type staging to confirm").fill("staging")
    page.get_by_role("button", name="Delete environment").click()
    expect(page).to_have_url(main_url)
    expect(page.get_by_text("Deleting staging… its namespace is being removed.")).to_be_visible()
    # The selector shows it going until the worker has removed its namespace, then not at all.
    for _ in range(40):
        if page.locator(".env-option-deleting").count() == 0:
            break
        expect(page.locator(".env-option-deleting")).to_contain_text("Deleting…")
        page.wait_for_timeout(500)
        page.reload()
    selector.locator("summary").first.click()
    expect(page.locator("a.env-option")).to_have_count(1)
    expect(page.locator(".env-option-deleting")).to_have_count(0)
    page.keyboard.press("Escape")

    # main is now the only one: its settings offer to delete the whole project.
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("button", name="Delete project")).to_be_visible()
