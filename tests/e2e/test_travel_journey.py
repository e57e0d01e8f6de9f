"""Environments that travel, in the browser: Download YAML from one environment, drop it on
another, preview, apply, see the cards; drop a .env file on Secret Management; clone an
environment and Start All. A real server, Celery worker, devcluster and watcher throughout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.steps import create_project, sign_in

pytestmark = pytest.mark.e2e

LIVE = 20_000  # ms

FIRST_FILE = """apiVersion: ale/v1
kind: Environment
spec:
  services:
    - name: web
      kind: web
      image: nginx:1.27
      port: 80
      env:
        - {name: MODE, value: production}
        - {name: API_TOKEN, secret: API_TOKEN}
      resources: {cpu: 0.1, memory: 64Mi, replicas: 1}
    - name: db
      kind: tcp
      image: postgres:16
      port: 5432
      resources: {cpu: 0.1, memory: 64Mi}
"""

# Three services of 3 vCPU: each within the per-service maximum, together over the space's 8.
OVER_ALLOCATION = "apiVersion: ale/v1\nkind: Environment\nspec:\n  services:\n" + "".join(
    f"    - {{name: big{i}, kind: web, image: 'nginx:1.27', port: 80, resources: {{cpu: 3, memory: 64Mi}}}}\n"
    for i in range(3)
)


def drop(page: Page, selector: str, name: str, content: str) -> None:
    """Drag a file from the desktop and drop it on `selector`, as a person would."""
    # A page that just (re)loaded shows its content before its deferred scripts have run: the
    # drop zone listens only once they have, as it would be for a person's slower hand.
    page.wait_for_load_state("load")
    transfer = page.evaluate_handle(
        """([name, content]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([content], name, {type: "text/plain"}));
            return transfer;
        }""",
        [name, content],
    )
    page.dispatch_event(selector, "dragenter", {"dataTransfer": transfer})
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def create_environment(page: Page, name: str, *, clone_from: str | None = None) -> str:
    selector = page.locator("[data-env-selector]")
    selector.locator("summary").first.click()
    page.get_by_text("Create new environment").click()
    form = page.locator("#env-create-form")
    if clone_from:
        form.get_by_role("radio", name="Add by Cloning").check()
        form.get_by_label("Source environment").select_option(label=clone_from)
    form.get_by_label("Environment Name").fill(name)
    form.get_by_role("button", name="Create").click()
    expect(page.locator(".env-badge")).to_contain_text(name)
    return page.url


def test_it_carries_an_environment_by_yaml_fills_its_secrets_and_clones_it(page: Page, ale_stack, demo_login, tmp_path: Path):
    sign_in(page, ale_stack.url(""), *demo_login)
    main_url = create_project(page, "travel", "Travel")

    # A file dropped anywhere on the page: a preview first, nothing applied yet.
    drop(page, ".env-page", "shop.yaml", FIRST_FILE)
    modal = page.locator("dialog#modal")
    expect(modal).to_be_visible()
    expect(modal.get_by_role("heading", name="Apply YAML to main")).to_be_visible()
    expect(modal.locator("[data-yaml-created] li")).to_have_count(2)
    expect(modal.get_by_role("heading", name="To create")).to_be_visible()
    expect(modal).to_contain_text("Secrets to set in Settings → Secret Management after applying")
    expect(page.locator(".service-card")).to_have_count(0)
    modal.get_by_role("button", name="Apply").click()
    expect(page.get_by_text("YAML applied: 2 created, 0 changed, 0 unchanged.")).to_be_visible()
    expect(page.locator(".service-card")).to_have_count(2)

    # A file over the space's allocation: the preview says what Apply would refuse, and
    # offers no Apply.
    drop(page, ".env-page", "big.yaml", OVER_ALLOCATION)
    expect(modal.get_by_role("heading", name="This file cannot be applied")).to_be_visible()
    expect(modal).to_contain_text("On-demand vCPU: this needs")
    expect(modal.get_by_role("button", name="Apply")).to_have_count(0)
    modal.get_by_role("button", name="Close").click()
    expect(page.locator("dialog#modal")).to_have_count(0)
    expect(page.locator(".service-card")).to_have_count(2)

    # A hostile file is refused with its line, and nothing changes.
    drop(page, ".env-page", "laughs.yaml", "a: &a [1]\nb: [*a, *a]\n")
    expect(modal).to_contain_text("line 1, column 4: anchors (&a) are not allowed")
    modal.get_by_role("button", name="Close").click()
    expect(page.locator("dialog#modal")).to_have_count(0)

    # Download YAML from main...
    with page.expect_download() as download_info:
        page.locator("[data-download-yaml]").click()
    downloaded = tmp_path / download_info.value.suggested_filename
    download_info.value.save_as(downloaded)
    assert downloaded.name == "travel-main.ale.yaml"
    text = downloaded.read_text()
    assert "apiVersion: ale/v1" in text and "API_TOKEN" in text

    # ...and drop it on a new, empty environment.
    create_environment(page, "staging")
    expect(page.get_by_text("No services yet")).to_be_visible()
    drop(page, ".env-page", downloaded.name, text)
    expect(modal.get_by_role("heading", name="Apply YAML to staging")).to_be_visible()
    expect(modal.locator("[data-yaml-created] li")).to_have_count(2)
    modal.get_by_role("button", name="Apply").click()
    # After the page reloads (the cards may arrive earlier, live through the socket).
    expect(page.get_by_text("YAML applied: 2 created, 0 changed, 0 unchanged.")).to_be_visible()
    cards = page.locator(".service-card")
    expect(cards).to_have_count(2)
    expect(page.locator(".service-card", has_text="db")).to_be_visible()

    # The same file again: nothing changes.
    drop(page, ".env-page", downloaded.name, text)
    expect(modal).to_contain_text("0 to create · 0 to change · 2 unchanged")
    modal.get_by_role("button", name="Apply (nothing changes)").click()
    expect(page.get_by_text("nothing to change")).to_be_visible()

    # Secret Management: a .env dropped on the section, keys previewed, values never shown.
    page.get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Secret Management")).to_be_visible()
    expect(page.locator("[data-missing-secrets]")).to_contain_text("API_TOKEN")
    drop(page, "#secrets", ".env", "# staging\nexport API_TOKEN='tok-very-secret'\nLOG_LEVEL=debug # noisy\n")
    expect(modal.get_by_role("heading", name="Apply .env to staging")).to_be_visible()
    expect(modal.locator("[data-dotenv-key]")).to_have_count(2)
    expect(modal).not_to_contain_text("tok-very-secret")
    modal.get_by_role("button", name="Apply 2 variables").click()
    expect(page.get_by_text(".env applied: 2 added, 0 replaced.")).to_be_visible()
    expect(page.locator('tr[data-variable="API_TOKEN"]')).to_contain_text("••••••")
    expect(page.locator("[data-missing-secrets]")).to_have_count(0)
    assert "tok-very-secret" not in page.content()
    expect(page.get_by_role("button", name="Restart services that use them")).to_be_visible()

    # Firewall: the warning, and the confirmation it needs.
    firewall = page.locator("#firewall")
    expect(firewall).to_contain_text("When enabled, this allows access from all IP addresses - configure with caution.")
    firewall.get_by_label("Allow external TCP connections").check()
    firewall.get_by_role("button", name="Save firewall").click()
    expect(page.locator("#firewall")).to_contain_text("tick the box to confirm")

    # Add by Cloning: every service, stopped; then Start All runs them.
    page.goto(main_url)
    create_environment(page, "qa", clone_from="main")
    expect(page.get_by_text("qa created as a clone of main: 2 services, stopped.")).to_be_visible()
    expect(cards).to_have_count(2)
    for card in cards.all():
        expect(card.locator(".status")).to_have_text("Stopped")
    page.get_by_role("link", name="Settings").click()
    expect(page.locator("[data-missing-secrets]")).to_contain_text("These secrets are referenced but not set: API_TOKEN")
    page.get_by_role("link", name="Information").click()

    # Start All refuses while the web service's secret is missing, and says where to set it.
    web_card = page.locator(".service-card", has_text="web")
    expect(web_card.locator("[data-card-missing-secrets]")).to_contain_text("no secret API_TOKEN")
    page.locator("[data-env-selector] summary").first.click()
    page.get_by_role("button", name=re.compile("Start All")).click()
    expect(page.locator("#messages")).to_contain_text(
        "Cannot start web: this environment has no secret API_TOKEN. Set it in Settings → Secret Management"
    )
    for card in cards.all():
        expect(card.locator(".status")).to_have_text("Stopped")

    # The message's link leads to Secret Management; the secret set there, Start All runs them.
    page.locator("#messages [data-set-secrets]").click()
    expect(page.get_by_role("heading", name="Secret Management")).to_be_visible()
    secrets = page.locator("#secrets .variable-form")
    secrets.get_by_label("Key").fill("API_TOKEN")
    secrets.get_by_label("Value").fill("tok-qa")
    secrets.get_by_role("button", name="Save variable").click()
    expect(page.locator('tr[data-variable="API_TOKEN"]')).to_be_visible()
    expect(page.locator("[data-missing-secrets]")).to_have_count(0)
    page.get_by_role("link", name="Information").click()
    expect(web_card.locator("[data-card-missing-secrets]")).to_have_count(0)
    page.locator("[data-env-selector] summary").first.click()
    page.get_by_role("button", name=re.compile("Start All")).click()
    expect(page.locator("#messages")).to_contain_text("Starting 2 services.")
    expect(page.locator(".service-card", has_text="db").locator(".status")).to_have_text("Running", timeout=LIVE)
    expect(web_card.locator(".status")).to_have_text("Running", timeout=LIVE)
