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


FOLLOW_SETUP = """
from django.contrib.auth import get_user_model
from api.actions import create_token
from clusters.models import Cluster
from services import actions
from services.forms import ServiceForm
from spaces.actions import create_project, ensure_default_space
User = get_user_model()
user, _ = User.objects.get_or_create(username="follower")
space = ensure_default_space(user)
project = create_project(acting_user=user, space=space, name="tail", display_name="", cluster=Cluster.objects.get(name="local"))
env = project.environments.get()
form = ServiceForm({"name": "web", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
                    "memory": "64Mi", "replicas": "1", "capacity": "on_demand"}, environment=env)
assert form.is_valid(), form.errors
service = actions.deploy_service(user, env, form.cleaned_data)
_, raw = create_token(user, name="tail", permission="read", spaces=None)
print(service.public_id, raw)
"""


def test_it_follows_a_log_until_the_client_goes(ale_stack):
    """`follow=true` over the real ASGI server: the tail comes as a streamed text answer, and
    the server goes on answering once the client closed it."""
    import time

    import requests

    # The last line: the shell may log before it.
    service_id, token = ale_stack.manage("shell", "-c", FOLLOW_SETUP).strip().splitlines()[-1].split()
    url = ale_stack.url(f"/api/v1/services/{service_id}/logs")
    headers = {"Authorization": f"Bearer {token}"}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if requests.get(url, params={"tail": 1}, headers=headers, timeout=20).text:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the service's pod wrote no log line within 60 s")

    with requests.get(url, params={"follow": "true", "tail": 2}, headers=headers, stream=True, timeout=20) as response:
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
        lines = response.iter_lines()
        first = next(lines)
        assert first
    # The server is still answering once the follower went.
    assert requests.get(url, params={"tail": 1}, headers=headers, timeout=20).status_code == 200
    assert "Traceback" not in ale_stack.log()
