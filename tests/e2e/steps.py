"""Steps the browser journeys share: signing in, creating a project, the accessibility scan."""

from __future__ import annotations

import re

from axe_playwright_python.sync_playwright import Axe
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
    """From an environment page: the deploy modal, open. The page must have loaded first: a click
    before htmx has taken over the link follows it to the deploy page of its own (which works
    without JavaScript, but is not the modal)."""
    page.wait_for_load_state("load")
    page.get_by_role("link", name="+ Deploy").click()
    modal = page.locator("dialog#modal")
    expect(modal).to_be_visible()
    return modal


def assert_accessible(page: Page, where: str) -> None:
    """Run axe-core (the copy axe-playwright-python ships) on the page as it is now; fail on any
    serious or critical finding, naming the rule, the elements and how to fix them. Ids must be
    unique too: axe no longer checks that, and a label whose `for` matches two fields names
    only the first."""
    duplicates = page.evaluate(
        "() => { const seen = {}; document.querySelectorAll('[id]').forEach(e => { seen[e.id] = (seen[e.id] || 0) + 1; });"
        " return Object.keys(seen).filter(id => seen[id] > 1); }"
    )
    assert not duplicates, f"ids used more than once on {where} ({page.url}): {duplicates}"
    # The page at rest: no htmx request in flight (a requesting element is faded on purpose while
    # it waits, see .htmx-request in ale.css) and no fade-back transition still running.
    page.wait_for_function(
        "() => !document.querySelector('.htmx-request, .htmx-swapping, .htmx-settling')"
        " && document.getAnimations().every(a => a.playState !== 'running' || a.effect?.getTiming().iterations === Infinity)"
    )
    results = Axe().run(page)
    findings = [v for v in results.response["violations"] if v["impact"] in ("serious", "critical")]
    report = "\n".join(
        f"- {v['id']} ({v['impact']}): {v['help']}\n"
        + "\n".join(f"    {', '.join(map(str, node['target']))}: {node['failureSummary']}" for node in v["nodes"][:5])
        for v in findings
    )
    assert not findings, f"axe found serious or critical problems on {where} ({page.url}):\n{report}"
