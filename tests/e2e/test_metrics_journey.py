"""Browser journey: the Metrics tab draws CPU and memory, marks a redeploy, switches ranges."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import sign_in
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

SETUP = """
import json
from clusters.models import Cluster
from services import actions
from services.forms import ServiceForm
from spaces.actions import create_project
from spaces.models import Space
from tests.factories import PASSWORD, make_user

user = make_user("charts")
space = Space.objects.get(owner=user, is_default=True)
project = create_project(acting_user=user, space=space, name="charts", display_name="Charts", cluster=Cluster.objects.get(name="local"))
env = project.environments.get()
form = ServiceForm({"name": "gen", "kind": "web", "source": "image", "image": "loggen:1", "port": "8080",
                    "cpu": "0.25", "memory": "128Mi", "replicas": "2", "health_check_path": "/",
                    "capacity": "on_demand", "env_vars": "LOG_RATE=500"}, environment=env)
assert form.is_valid(), form.errors
service = actions.deploy_service(user, env, form.cleaned_data)
print(json.dumps({"username": "charts", "password": PASSWORD, "service": service.public_id}))
"""

# One read of the cluster by the real sampler (beat is not part of the journey's stack).
SAMPLE = """
from clusters.models import Cluster
from services.metrics import sample_and_record
result = sample_and_record(Cluster.objects.get(name="local"))
print(result.services if result else 0)
"""


def sample(ale_stack) -> int:
    return int(ale_stack.manage("shell", "-c", SAMPLE).strip().splitlines()[-1])


def console_errors(page: Page) -> list[str]:
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    return errors


def test_the_metrics_tab_charts_a_service_and_marks_a_redeploy(page: Page, ale_stack):
    world = json.loads(ale_stack.manage("shell", "-c", SETUP).strip().splitlines()[-1])
    wait_for(lambda: sample(ale_stack) >= 1, timeout=60, interval=1, what="a sample of the running service")
    errors = console_errors(page)
    sign_in(page, ale_stack.url(""), world["username"], world["password"])
    expect(page.get_by_role("heading", name="Projects")).to_be_visible()

    page.goto(ale_stack.url(f"/services/{world['service']}/"))
    page.get_by_role("link", name="Metrics").click()
    expect(page).to_have_url(re.compile(rf"/services/{world['service']}/metrics/$"))
    charts = page.locator("#metrics-charts")
    for name in ("cpu", "memory"):
        chart = charts.locator(f"[data-chart={name}]")
        expect(chart.locator("path.line-total")).to_have_count(1)
        expect(chart.locator(".chart-level")).to_have_count(2)
    expect(charts.locator("[data-chart=cpu] .chart-markers li")).to_have_text([re.compile(r"^Revision 1 · loggen:1 · charts$")])

    # A redeploy from the Overview tab adds a revision marker.
    page.get_by_role("link", name="Overview").click()
    page.get_by_role("button", name="Redeploy").click()
    page.get_by_role("link", name="Metrics").click()
    markers = charts.locator("[data-chart=memory] g.marker-revision")
    expect(markers).to_have_count(2)
    expect(markers.nth(1).locator("title")).to_have_text("Revision 2 · loggen:1 · charts")

    # Ranges swap the charts in place and keep the address.
    for key in ("6h", "24h", "7d", "1h"):
        page.locator(f"#metrics-charts a[data-range='{key}']").click()
        expect(page.locator(f"#metrics-charts a[data-range='{key}']")).to_have_attribute("aria-current", "true")
        expect(page).to_have_url(re.compile(rf"/metrics/\?range={key}$"))
        expect(charts.locator("[data-chart=cpu]")).to_be_visible()
        expect(charts.locator("[data-chart=memory] g.marker-revision")).to_have_count(2)

    # Each pod on demand: two pods, a line each, in both charts.
    charts.locator("a[data-link=pods]").click()
    expect(charts.locator("[data-chart=cpu] path.line-pod")).to_have_count(2)
    assert errors == [], f"browser console errors: {errors}"
