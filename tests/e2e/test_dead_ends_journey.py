"""Small dead ends, walked in Chromium: rollback asks first, the create-environment form shows
the source only for a clone, and the narrow layout opens its sidebar from a Menu button (with
and without JavaScript)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import sign_in

pytestmark = pytest.mark.e2e

PASSWORD = "a long passphrase for e2e"

SETUP = """
from django.contrib.auth import get_user_model
from clusters.models import Cluster
from services import actions
from services.forms import ServiceForm
from spaces.actions import create_project, ensure_default_space
User = get_user_model()
user, _ = User.objects.get_or_create(username="walker", defaults={"email": "walker@example.com"})
user.set_password("%(password)s"); user.save()
space = ensure_default_space(user)
project = space.projects.filter(name="ends").first() or create_project(
    acting_user=user, space=space, name="ends", display_name="Ends", cluster=Cluster.objects.get(name="local"))
environment = project.environments.get(name="main")
service = environment.services.filter(name="web").first()
if service is None:
    for image in ("nginx:1.27", "nginx:1.28"):
        data = {"name": "web", "kind": "web", "source": "image", "image": image, "port": "80", "capacity": "on_demand",
                "cpu": "0.1", "memory": "128Mi", "replicas": "1", "health_check_path": "/"}
        form = ServiceForm(data, environment=environment, service=service)
        assert form.is_valid(), form.errors
        service = actions.deploy_service(user, environment, form.cleaned_data, service=service)
print("ids", environment.public_id, service.public_id)
""" % {"password": PASSWORD}


def set_up(ale_stack) -> tuple[str, str]:
    """The walker's `ends` project: (its main environment's id, its `web` service's id)."""
    [line] = [line for line in ale_stack.manage("shell", "-c", SETUP).splitlines() if line.startswith("ids ")]
    _, env_id, service_id = line.split()
    return env_id, service_id


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_rollback_asks_first_naming_the_revision_and_image(page: Page, ale_stack):
    env_id, service_id = set_up(ale_stack)
    base = ale_stack.url("").rstrip("/")
    errors = console_errors(page)
    sign_in(page, base, "walker", PASSWORD)
    page.goto(f"{base}/services/{service_id}/")
    revisions = page.locator(".revision-list li")
    count = revisions.count()

    # Asking, then cancelling, changes nothing.
    first = page.locator(".revision", has=page.locator(".revision-number", has_text=re.compile(r"^#1$")))
    first.get_by_role("link", name="Roll back to this").click()
    dialog = page.get_by_role("dialog", name="Roll back web to revision #1?")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("image nginx:1.27")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)
    expect(revisions).to_have_count(count)

    # Confirmed, it rolls back as a new revision.
    first.get_by_role("link", name="Roll back to this").click()
    page.get_by_role("dialog").get_by_role("button", name="Roll back to #1").click()
    expect(page.get_by_text("Rolling web back to revision 1.")).to_be_visible()
    expect(revisions).to_have_count(count + 1)
    expect(revisions.first).to_contain_text("rollback")
    expect(revisions.first).to_contain_text("nginx:1.27")
    assert errors == [], f"browser console errors: {errors}"


def test_the_create_form_shows_the_source_only_for_a_clone(page: Page, browser, ale_stack):
    env_id, _ = set_up(ale_stack)
    base = ale_stack.url("").rstrip("/")
    errors = console_errors(page)
    sign_in(page, base, "walker", PASSWORD)
    page.goto(f"{base}/environments/{env_id}/")
    page.locator("[data-env-selector] summary").first.click()
    page.get_by_text("Create new environment").click()
    form = page.locator("#env-create-form")
    source = form.get_by_label("Source environment")
    expect(form.get_by_role("radio", name="Create as Empty Environment")).to_be_checked()
    expect(source).to_be_hidden()
    form.get_by_role("radio", name="Add by Cloning").check()
    expect(source).to_be_visible()
    form.get_by_role("radio", name="Create as Empty Environment").check()
    expect(source).to_be_hidden()
    assert errors == [], f"browser console errors: {errors}"

    # Without JavaScript: the same, from the stylesheet alone.
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    try:
        plain = context.new_page()
        sign_in(plain, base, "walker", PASSWORD)
        plain.goto(f"{base}/environments/{env_id}/")
        plain.locator("[data-env-selector] summary").first.click()
        plain.get_by_text("Create new environment").click()
        form = plain.locator("#env-create-form")
        expect(form.get_by_label("Source environment")).to_be_hidden()
        form.get_by_role("radio", name="Add by Cloning").check()
        expect(form.get_by_label("Source environment")).to_be_visible()
    finally:
        context.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["script", "no-script"])
def test_the_narrow_layout_opens_the_sidebar_from_a_menu_button(browser, ale_stack, javascript):
    set_up(ale_stack)
    base = ale_stack.url("").rstrip("/")
    context = browser.new_context(viewport={"width": 390, "height": 800}, java_script_enabled=javascript)
    context.set_default_timeout(10_000)
    try:
        page = context.new_page()
        errors = console_errors(page)
        sign_in(page, base, "walker", PASSWORD)
        sidebar = page.get_by_role("navigation", name="Spaces and projects")
        expect(sidebar).to_be_hidden()
        if javascript:
            menu = page.get_by_role("button", name="Menu")
            expect(menu).to_have_attribute("aria-expanded", "false")
            expect(menu).to_have_attribute("aria-controls", "sidebar")
            menu.click()
            expect(sidebar).to_be_visible()
            expect(menu).to_have_attribute("aria-expanded", "true")
            menu.click()
            expect(sidebar).to_be_hidden()
            # From the keyboard: Space opens it, Escape closes it and leaves the focus on the button.
            menu.focus()
            page.keyboard.press("Space")
            expect(sidebar).to_be_visible()
            page.keyboard.press("Escape")
            expect(sidebar).to_be_hidden()
            expect(menu).to_be_focused()
            page.keyboard.press("Enter")
            expect(sidebar).to_be_visible()
        else:
            page.get_by_role("link", name="Menu").click()
            expect(sidebar).to_be_visible()
        sidebar.get_by_role("link", name="New space").click()
        expect(page).to_have_url(re.compile(r"/spaces/new/$"))
        assert errors == [], f"browser console errors: {errors}"
    finally:
        context.close()
