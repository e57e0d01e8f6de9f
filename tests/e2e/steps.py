"""Steps the browser journeys share: signing in and creating a project."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

ENV_URL = re.compile(r"/environments/[a-z0-9]{12}/$")


def sign_in(page: Page, base: str, username: str, password: str) -> None:
    """Through the sign-in form at `base` (the server's address, without a trailing slash)."""
    page.goto(base.rstrip("/") + "/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def create_project(page: Page, name: str, display_name: str) -> str:
    """From a space page: the new project's `main` environment, where the browser lands."""
    page.get_by_label("Project Name").fill(name)
    page.get_by_label("Display Name").fill(display_name)
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(ENV_URL)
    return page.url


def open_deploy_modal(page: Page) -> Locator:
    """From an environment page: the deploy modal, open."""
    page.get_by_role("link", name="+ Deploy").click()
    modal = page.locator("dialog#modal")
    expect(modal).to_be_visible()
    return modal
