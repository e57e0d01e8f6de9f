"""API tokens in the browser: create one from the user menu, see it once and copy it, call the
API with it, revoke it in one click; the API docs page renders from ale's own static files."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e


def call(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            json.load(response)
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_it_creates_uses_and_revokes_a_token(page: Page, ale_server, demo_login):
    username, password = demo_login
    page.goto(ale_server.url("/login/"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()

    page.locator(".user-menu summary").click()
    page.get_by_role("link", name="API tokens").click()
    expect(page.get_by_role("heading", name="API tokens", level=1)).to_be_visible()
    page.get_by_label("Name").fill("Pipeline")
    page.get_by_label("Deploy (everything a member may do)").check()
    page.get_by_role("button", name="Create token").click()

    token = page.locator("#new-token").inner_text()
    assert re.fullmatch(r"ale_[0-9A-Za-z]{36}", token)
    expect(page.get_by_role("button", name="Copy token")).to_be_visible()
    row = page.get_by_role("row", name=re.compile("Pipeline"))
    expect(row).to_contain_text("all spaces")
    assert call(ale_server.url("/api/v1/spaces"), token) == 200
    page.reload()
    expect(row).to_contain_text("Deploy")
    expect(page.locator("#new-token")).to_have_count(0)

    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("Revoked Pipeline.")).to_be_visible()
    expect(page.get_by_role("row", name=re.compile("Pipeline"))).to_have_count(0)
    assert call(ale_server.url("/api/v1/spaces"), token) == 401

    page.goto(ale_server.url("/api/v1/docs"))
    expect(page.get_by_text("/api/v1/services/{service_id}/deploy").first).to_be_visible()
