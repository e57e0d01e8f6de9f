"""A team in the browser: an owner invites someone by e-mail, the newcomer signs up through the
link, signs in and deploys; a deploy over the space's allocation is refused with its reason.

The invitation e-mail goes through Django's console backend: the link is read from the
server's output, where an operator without a mail server would find it too.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import ENV_URL, assert_accessible, open_deploy_modal, sign_in

pytestmark = pytest.mark.e2e

LIVE = 20_000  # ms
PASSWORD = "a long passphrase for e2e"

SETUP = """
from django.contrib.auth import get_user_model
from spaces.actions import ensure_default_space
from spaces.models import Membership, ResourceAllocation, Space
User = get_user_model()
lead, _ = User.objects.get_or_create(username="lead", defaults={"email": "lead@example.com"})
lead.set_password("%(password)s"); lead.save()
ensure_default_space(lead)
space, _ = Space.objects.get_or_create(name="acme-team")
Membership.objects.get_or_create(space=space, user=lead, defaults={"role": "owner"})
# One running service: the second deploy is over the allocation.
ResourceAllocation.objects.update_or_create(space=space, defaults={"max_running_services": 1})
""" % {"password": PASSWORD}


def test_an_invited_member_signs_up_deploys_and_meets_the_allocation(page: Page, new_context, console_errors, ale_stack):
    ale_stack.manage("shell", "-c", SETUP)
    base = ale_stack.url("").rstrip("/")

    # The owner invites a newcomer by e-mail from the Team page.
    sign_in(page, base, "lead", PASSWORD)
    page.get_by_role("link", name="acme-team").click()
    page.get_by_role("navigation", name="Space pages").get_by_role("link", name="Team").click()
    page.get_by_label("E-mail or username").fill("newcomer@example.com")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_text("Invitation sent to newcomer@example.com.")).to_be_visible()
    expect(page.locator(".invitation-list")).to_contain_text("newcomer@example.com")
    assert_accessible(page, "the Team page")
    links = re.findall(r"http://127\.0\.0\.1:\d+/invitations/[A-Za-z0-9_-]+/", ale_stack.log())
    assert links, "the invitation e-mail is in the server's output"
    link = links[-1]

    # The newcomer opens the link in a browser of their own and signs up.
    newcomer = new_context()
    other = newcomer.new_page()
    try:
        other.goto(link)
        expect(other.get_by_role("heading", name="Join acme-team")).to_be_visible()
        expect(other.get_by_label("E-mail")).to_have_value("newcomer@example.com")
        other.get_by_label("Username").fill("newcomer")
        other.get_by_label("Password", exact=True).fill(PASSWORD)
        other.get_by_label("Password confirmation").fill(PASSWORD)
        other.get_by_role("button", name="Sign up and join").click()
        expect(other.get_by_text("Welcome to acme-team.")).to_be_visible()

        # The link is spent (answered 404, which the console reports).
        console_errors.expect("status of 404")
        other.goto(link)
        expect(other.get_by_role("heading", name="This invitation cannot be used")).to_be_visible()

        # Sign out, sign in again: the space is theirs too.
        other.goto(base + "/")
        other.locator(".user-menu summary").click()
        other.get_by_role("button", name="Sign out").click()
        sign_in(other, base, "newcomer", PASSWORD)
        other.get_by_role("link", name="acme-team").click()
        expect(other.get_by_role("heading", level=1)).to_have_text("acme-team")
        # Members see the team but not the owners' pages.
        expect(other.get_by_role("navigation", name="Space pages").get_by_role("link", name="Settings")).to_have_count(0)

        # A member creates a project and deploys.
        other.get_by_label("Project Name").fill("shop")
        other.get_by_role("button", name="Create project").click()
        expect(other).to_have_url(ENV_URL)
        modal = open_deploy_modal(other)
        modal.get_by_label("Service name").fill("web")
        modal.get_by_label("Container image").fill("nginx:1.27")
        modal.get_by_label("Port").fill("80")
        modal.get_by_role("button", name="Deploy", exact=True).click()
        expect(other.locator("dialog#modal")).to_have_count(0)
        card = other.locator(".service-card", has_text="web")
        expect(card.locator(".status")).to_have_text("Running", timeout=LIVE)
        expect(card).to_contain_text("Deployed by newcomer")

        # The usage panel follows: one of one running service.
        expect(other.locator("#usage-panel")).to_contain_text("1 / 1", timeout=LIVE)

        # A second service is over the allocation: refused in the modal, nothing deployed.
        modal = open_deploy_modal(other)
        modal.get_by_label("Service name").fill("worker")
        modal.get_by_label("Container image").fill("nginx:1.27")
        modal.get_by_label("Port").fill("80")
        modal.get_by_role("button", name="Deploy", exact=True).click()
        expect(modal.get_by_role("alert").first).to_contain_text("Running services: this needs 1, 0 of 1 is left")
        expect(other.locator(".service-card")).to_have_count(1)
    finally:
        newcomer.close()

    # The owner's audit log tells the story.
    page.goto(base + "/")
    page.get_by_role("link", name="acme-team").click()
    page.get_by_role("navigation", name="Space pages").get_by_role("link", name="Audit log").click()
    table = page.locator(".audit-table")
    expect(table).to_contain_text("Invited newcomer@example.com as member")
    expect(table).to_contain_text("Added newcomer as member")
    expect(table).to_contain_text("Deployed web (revision 1)")


def test_an_owner_copies_an_invitation_link_and_a_newcomer_joins_with_it(page: Page, ale_stack):
    """No mail server: the owner copies the pending invitation's link from the Team page."""
    ale_stack.manage("shell", "-c", SETUP)
    base = ale_stack.url("").rstrip("/")
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)

    sign_in(page, base, "lead", PASSWORD)
    page.goto(base + "/")
    page.get_by_role("link", name="acme-team").click()
    page.get_by_role("navigation", name="Space pages").get_by_role("link", name="Team").click()
    page.get_by_label("E-mail or username").fill("copied@example.com")
    page.get_by_label("Role", exact=True).select_option("member")
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_text("Invitation sent to copied@example.com.")).to_be_visible()

    pending = page.locator(".invitation-list li", has_text="copied@example.com")
    field = pending.get_by_label("Invitation link for copied@example.com")
    expect(field).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/invitations/[0-9a-f]{64}/$"))
    link = field.input_value()
    pending.get_by_role("button", name="Copy link").click()
    expect(pending.get_by_role("button", name="Copied")).to_be_visible()
    # 127.0.0.1 is a secure context, so the button used the Clipboard API.
    assert page.evaluate("navigator.clipboard.readText()") == link

    # The owner signs out; someone new opens the link in the same browser and joins.
    page.locator(".user-menu summary").click()
    page.get_by_role("button", name="Sign out").click()
    page.goto(link)
    expect(page.get_by_role("heading", name="Join acme-team")).to_be_visible()
    expect(page.get_by_label("E-mail")).to_have_value("copied@example.com")
    page.get_by_label("Username").fill("copied")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password confirmation").fill(PASSWORD)
    page.get_by_role("button", name="Sign up and join").click()
    expect(page.get_by_text("Welcome to acme-team.")).to_be_visible()
    expect(page.get_by_role("heading", level=1)).to_have_text("acme-team")
    assert errors == [], f"browser console errors: {errors}"
