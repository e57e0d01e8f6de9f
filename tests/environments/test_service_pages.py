"""The Information tab renders its cards a page at a time: the first page with the tab, the rest
through a sentinel after the grid (htmx when it comes into view, a plain link without it)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from environments.models import Environment
from environments.tabs import CARDS_PER_PAGE
from services.models import Service

pytestmark = pytest.mark.django_db

CARD = 'class="card service-card"'


def add_services(environment: Environment, user, count: int, *, start: int = 0) -> None:
    # Rows written directly: no deploy action, so no reconcile is enqueued for hundreds of them.
    now = timezone.now()
    Service.objects.bulk_create(
        Service(
            environment=environment,
            name=f"svc-{index:04d}",
            image=f"registry.example.com/team/app-{index}:v1",
            port=8080,
            status="running",
            deployed_by=user,
            deployed_at=now,
            status_changed_at=now,
        )
        for index in range(start, start + count)
    )


def card_names(html: str) -> list[str]:
    names = re.findall(r"svc-\d{4}", html)
    return list(dict.fromkeys(names))


def url(environment: Environment) -> str:
    return reverse("environments:detail", args=[environment.public_id])


def test_the_first_page_shows_a_page_of_cards_and_the_sentinel(owner_client, owner, main_env):
    add_services(main_env, owner, CARDS_PER_PAGE + 5)
    html = owner_client.get(url(main_env)).content.decode()
    assert html.count(CARD) == CARDS_PER_PAGE
    assert card_names(html) == [f"svc-{i:04d}" for i in range(CARDS_PER_PAGE)]
    sentinel = f'hx-get="{url(main_env)}?page=2" hx-trigger="revealed" hx-swap="outerHTML"'
    assert sentinel in html
    assert f'<a href="{url(main_env)}?page=2">Show more services</a>' in html


def test_the_htmx_tab_also_stops_at_the_first_page(owner_client, owner, main_env):
    add_services(main_env, owner, CARDS_PER_PAGE + 1)
    html = owner_client.get(url(main_env), HTTP_HX_REQUEST="true").content.decode()
    assert html.count(CARD) == CARDS_PER_PAGE
    assert "data-more-services" in html


def test_the_second_page_brings_the_rest_and_no_sentinel(owner_client, owner, main_env):
    add_services(main_env, owner, CARDS_PER_PAGE + 5)
    response = owner_client.get(url(main_env) + "?page=2", HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert response.status_code == 200
    assert card_names(html) == [f"svc-{i:04d}" for i in range(CARDS_PER_PAGE, CARDS_PER_PAGE + 5)]
    # The cards join the grid out of band; the rest of the response replaces the sentinel.
    assert 'hx-swap-oob="beforeend:#service-grid"' in html
    assert "data-more-services" not in html
    assert "<html" not in html and "Services</h2>" not in html


def test_a_middle_page_brings_the_next_sentinel(owner_client, owner, main_env):
    add_services(main_env, owner, 2 * CARDS_PER_PAGE + 1)
    html = owner_client.get(url(main_env) + "?page=2", HTTP_HX_REQUEST="true").content.decode()
    assert html.count(CARD) == CARDS_PER_PAGE
    assert f'hx-get="{url(main_env)}?page=3"' in html


def test_without_javascript_the_link_shows_every_card_up_to_that_page(owner_client, owner, main_env):
    add_services(main_env, owner, CARDS_PER_PAGE + 5)
    response = owner_client.get(url(main_env) + "?page=2")
    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" in html
    assert card_names(html) == [f"svc-{i:04d}" for i in range(CARDS_PER_PAGE + 5)]
    assert "Show more services" not in html


def test_exactly_one_page_has_no_sentinel(owner_client, owner, main_env):
    add_services(main_env, owner, CARDS_PER_PAGE)
    html = owner_client.get(url(main_env)).content.decode()
    assert html.count(CARD) == CARDS_PER_PAGE
    assert "data-more-services" not in html


@pytest.mark.parametrize("page", ["0", "-3", "x"])
def test_a_bad_page_falls_back_to_the_first(owner_client, owner, main_env, page):
    add_services(main_env, owner, CARDS_PER_PAGE + 1)
    response = owner_client.get(url(main_env) + f"?page={page}")
    assert response.status_code == 200
    assert response.content.decode().count(CARD) == CARDS_PER_PAGE


@pytest.mark.parametrize("htmx", [False, True])
@pytest.mark.parametrize("query", ["", "?page=2"])
def test_the_query_count_is_the_same_for_61_and_200_services(owner_client, owner, main_env, htmx, query):
    headers = {"HTTP_HX_REQUEST": "true"} if htmx else {}
    add_services(main_env, owner, CARDS_PER_PAGE + 1)
    owner_client.get(url(main_env) + query, **headers)  # warm the session and the content types
    with CaptureQueriesContext(connection) as few:
        owner_client.get(url(main_env) + query, **headers)
    add_services(main_env, owner, 200 - (CARDS_PER_PAGE + 1), start=CARDS_PER_PAGE + 1)
    assert main_env.services.count() == 200
    with CaptureQueriesContext(connection) as many:
        owner_client.get(url(main_env) + query, **headers)
    assert len(many.captured_queries) == len(few.captured_queries) <= 15


def test_a_secret_missing_for_a_later_page_is_still_reported(owner_client, owner, main_env):
    add_services(main_env, owner, CARDS_PER_PAGE + 1)
    last = main_env.services.order_by("name").last()
    last.env_vars = [{"key": "DB_PASSWORD", "secret": "DB_PASSWORD"}]
    last.save(update_fields=["env_vars"])
    html = owner_client.get(url(main_env)).content.decode()
    assert str(last.public_id) not in html
    assert "data-missing-secrets" in html
