"""The environment page as a whole, in the browser: live updates reach only what the current tab
shows (no htmx error in the console), every failed request says so, the colour bar frames the
page above its messages, and labels point at their fields.

Console errors fail every journey (see conftest.py); the ones a step causes on purpose (a 413,
an aborted request) are declared with `console_errors.expect` just before it.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import assert_accessible, create_project, open_deploy_modal, sign_in

pytestmark = pytest.mark.e2e

LIVE = 20_000  # ms: a worker task, a pod start (0.3 s) and a watch event, on a busy machine

COUNT_SOCKET_MESSAGES = """() => {
  window.__socketMessages = 0;
  document.body.addEventListener("htmx:wsAfterMessage", () => { window.__socketMessages += 1; });
}"""


def open_tab(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Environment").get_by_role("link", name=name).click()
    expect(page.get_by_role("navigation", name="Environment").get_by_role("link", name=name)).to_have_attribute(
        "aria-current", "page"
    )


def wait_for_socket_messages(page: Page, count: int) -> None:
    page.wait_for_function(f"() => window.__socketMessages >= {count}", timeout=LIVE)


def test_live_updates_reach_only_what_each_tab_shows(page: Page, ale_stack, demo_login, console_errors):
    username, password = demo_login
    sign_in(page, ale_stack.url(""), username, password)
    create_project(page, "livetabs", "Live tabs")
    page.evaluate(COUNT_SOCKET_MESSAGES)

    # Information: the card goes live; the socket's event lists, for the Events tab, are not
    # for this tab.
    modal = open_deploy_modal(page)
    modal.get_by_label("Service name").fill("web")
    modal.get_by_label("Container image").fill("nginx:1.27")
    modal.get_by_label("Port").fill("80")
    modal.get_by_role("button", name="Deploy", exact=True).click()
    # The dialog closes after the answer is in: before, its out-of-band flash messages were
    # looked for inside the closed dialog (htmx:oobErrorNoTarget #messages).
    expect(page.locator("dialog#modal")).to_have_count(0)
    card = page.locator(".service-card", has_text="web")
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)
    assert_accessible(page, "the Information tab with a running service")

    # Stop, with its answer held until the socket has brought the stopping card: the card is
    # not replaced under the pending button, so the answer (and its flash messages) still
    # finds the page. Before, htmx looked for #messages inside the replaced card.
    held = []
    stop_url = re.compile(r"/services/[a-z0-9]{12}/stop/$")
    page.route(stop_url, lambda route: held.append((route, route.fetch())))
    seen = page.evaluate("window.__socketMessages")
    card.get_by_role("button", name="Stop").click()
    wait_for_socket_messages(page, seen + 1)
    # The card goes out as the Stop commits, at once: the route may still be reading the answer.
    for _ in range(int(LIVE / 50)):
        if held:
            break
        page.wait_for_timeout(50)
    assert len(held) == 1, "the Stop request never reached the page's route"
    route, response = held[0]
    route.fulfill(response=response)
    page.unroute(stop_url)
    expect(card.locator(".status")).to_have_text("Stopped", timeout=LIVE)
    expect(page.locator(".service-card")).to_have_count(1)

    # Events: Start All answers with every card, which this tab does not show; the socket,
    # told the tab, sends its event list as the service starts.
    open_tab(page, "Events")
    seen = page.evaluate("window.__socketMessages")
    page.locator("[data-env-selector] > summary").click()
    page.get_by_role("button", name=re.compile("Start All")).click()
    expect(page.locator("#messages")).to_contain_text("Starting 1 service.")
    wait_for_socket_messages(page, seen + 1)
    expect(page.locator("#event-list tr.event").first).to_be_visible()
    assert_accessible(page, "the Events tab with events")

    # Settings shows no card either.
    open_tab(page, "Settings")
    page.locator("[data-env-selector] > summary").click()
    page.get_by_role("button", name=re.compile("Start All")).click()
    expect(page.locator("#messages")).to_contain_text("No stopped services to start.")

    open_tab(page, "Information")
    expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)


def test_a_failed_request_says_why(page: Page, ale_server, demo_login, console_errors):
    username, password = demo_login
    sign_in(page, ale_server.url(""), username, password)
    create_project(page, "errors", "Errors")
    open_tab(page, "Settings")
    alert = page.locator("#request-error")
    form = page.locator("form.dotenv-form")

    # 5 MB of pasted .env text: more than Django reads of a form. The answer names the limit in
    # the words the file drop uses, where it is read out (role="alert").
    console_errors.expect("status of 413", "Response Status Error Code 413", "htmx:afterRequest")
    form.get_by_label("…or paste KEY=value lines").fill("BIG=" + "x" * (5 * 1024 * 1024))
    form.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_have_text(re.compile(r"^The file is larger than 256 KiB; a \.env file is much smaller\."))
    expect(alert).to_be_in_viewport()
    page.screenshot(path="/tmp/ale-request-error.png")
    alert.get_by_role("button", name="Dismiss").click()
    expect(alert).to_be_empty()

    # The server out of reach: a generic sentence, not silence.
    console_errors.expect("net::ERR_FAILED", "htmx:sendError", "htmx:afterRequest")
    page.route("**/variables/dotenv/", lambda route: route.abort())
    form.get_by_label("…or paste KEY=value lines").fill("A=1")
    form.get_by_role("button", name="Preview").click()
    expect(alert).to_contain_text("ale could not be reached. Check your connection, then try again.")
    page.unroute("**/variables/dotenv/")
    alert.get_by_role("button", name="Dismiss").click()

    # From a modal dialog, which covers the page, the sentence shows in the dialog: here the
    # preview's Apply meets a server that is down (503: with DEBUG on, as here, django-htmx
    # shows its own page for a 500).
    form.get_by_role("button", name="Preview").click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    console_errors.expect("status of 503", "Response Status Error Code 503", "htmx:afterRequest")
    page.route("**/variables/dotenv/apply/", lambda route: route.fulfill(status=503, body="<h1>Service Unavailable</h1>"))
    dialog.get_by_role("button", name=re.compile("Apply")).click()
    expect(dialog.get_by_role("alert")).to_contain_text("ale could not do this (error 503). Try again in a moment.")
    expect(dialog.get_by_role("alert")).to_be_in_viewport()
    page.screenshot(path="/tmp/ale-request-error-dialog.png")
    expect(alert).to_be_empty()


def test_the_colour_bar_spans_the_column_above_the_messages(page: Page, ale_server, demo_login):
    username, password = demo_login
    # Wider than the content's 1100 px: the bar used to stop where the content did.
    page.set_viewport_size({"width": 1600, "height": 900})
    sign_in(page, ale_server.url(""), username, password)
    create_project(page, "colours", "Colours")

    # A clone: it has a colour, and the page opens with a flash message.
    page.locator("[data-env-selector] > summary").click()
    page.get_by_text("Create new environment").click()
    create = page.locator("#env-create-form")
    create.get_by_role("radio", name="Add by Cloning").check()
    create.get_by_label("Source environment").select_option(label="main")
    create.get_by_label("Environment Name").fill("qa")
    create.get_by_role("button", name="Create").click()
    message = page.locator("#messages .message")
    expect(message).to_contain_text("qa created as a clone of main")

    bar = page.locator(".env-page").bounding_box()
    column = page.locator(".main").bounding_box()
    layout = page.locator(".layout").bounding_box()
    box = message.bounding_box()
    page.screenshot(path="/tmp/ale-colour-bar.png")
    # The bar (the page's 4 px top border) runs from the sidebar to the right edge...
    assert abs(bar["x"] - column["x"]) <= 1, (bar, column)
    assert abs((bar["x"] + bar["width"]) - (layout["x"] + layout["width"])) <= 1, (bar, layout)
    # ...and the message sits under it, not across it.
    assert box["y"] >= bar["y"] + 4, (box, bar)

    # The first Tab shows the skip link; it takes the keyboard past the sidebar to the content.
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(page.locator("main#main")).to_be_focused()

    # The Settings tab's "Environment Name" is the rename field's label, not the selector's
    # create form's (they shared id="id_name").
    open_tab(page, "Settings")
    settings = page.locator("#env-body")
    settings.get_by_text("Environment Name", exact=True).click()
    expect(settings.get_by_role("textbox", name="Environment Name")).to_be_focused()
    expect(settings.get_by_role("textbox", name="Environment Name")).to_have_value("qa")
    assert_accessible(page, "the Settings tab")
