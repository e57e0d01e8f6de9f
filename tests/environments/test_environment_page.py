from __future__ import annotations

import pytest
from django.urls import reverse

from tests.factories import make_environment

TABS = {"environments:detail": "No services yet", "environments:events": "No events yet", "environments:settings": "Environment Information"}


@pytest.fixture(params=list(TABS))
def tab(request) -> str:
    return request.param


def test_it_shows_each_tab_to_the_owner(owner_client, main_env, tab):
    response = owner_client.get(reverse(tab, args=[main_env.public_id]))
    html = response.content.decode()
    assert response.status_code == 200
    assert TABS[tab] in html
    assert "<h1>Shop</h1>" in html
    assert "@team</a>/shop" in html
    assert 'aria-current="page">' + {"environments:detail": "Information", "environments:events": "Events", "environments:settings": "Settings"}[tab] in html


def test_it_shows_each_tab_to_a_member(member_client, main_env, tab):
    assert member_client.get(reverse(tab, args=[main_env.public_id])).status_code == 200


def test_it_hides_each_tab_from_an_outsider(outsider_client, main_env, tab):
    assert outsider_client.get(reverse(tab, args=[main_env.public_id])).status_code == 404


def test_it_answers_404_for_an_unknown_environment(owner_client, db, tab):
    assert owner_client.get(reverse(tab, args=["unknown00000"])).status_code == 404


def test_it_sends_anonymous_to_login_from_each_tab(client, main_env, tab):
    response = client.get(reverse(tab, args=[main_env.public_id]))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_it_rejects_wrong_method_on_each_tab(owner_client, main_env, tab):
    assert owner_client.post(reverse(tab, args=[main_env.public_id])).status_code == 405


def test_it_returns_only_the_tab_to_htmx(owner_client, main_env, tab, htmx_headers):
    response = owner_client.get(reverse(tab, args=[main_env.public_id]), headers=htmx_headers)
    html = response.content.decode()
    assert TABS[tab] in html
    assert "<html" not in html
    assert 'class="tabs"' in html
    assert 'id="messages"' in html and 'hx-swap-oob="true"' in html


def test_it_returns_the_whole_page_to_a_history_restore(owner_client, main_env, htmx_headers):
    headers = {**htmx_headers, "HX-History-Restore-Request": "true"}
    response = owner_client.get(reverse("environments:events", args=[main_env.public_id]), headers=headers)
    assert "<html" in response.content.decode()


def test_it_returns_the_whole_page_to_a_boosted_link(owner_client, main_env, htmx_headers):
    response = owner_client.get(reverse("environments:detail", args=[main_env.public_id]), headers={**htmx_headers, "HX-Boosted": "true"})
    assert "<html" in response.content.decode()


def test_it_lists_every_environment_in_the_selector_with_its_colour(owner_client, project, owner, main_env):
    staging = make_environment(project, by=owner, name="staging")
    qa = make_environment(project, by=owner, name="qa")
    html = owner_client.get(reverse("environments:detail", args=[staging.public_id])).content.decode()
    for environment in (main_env, staging, qa):
        assert reverse("environments:detail", args=[environment.public_id]) in html
    assert f"--dot-color: {staging.color}" in html
    assert f"--dot-color: {qa.color}" in html
    # The page wears the colour of the environment being shown.
    assert f'style="--env-color: {staging.color}"' in html
    assert "Create new environment" in html


def test_it_gives_main_the_neutral_colour(owner_client, main_env):
    html = owner_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
    assert "env-page env-main" in html
    assert 'style="--env-color: var(--main-env-color)"' in html


def test_it_shows_where_the_services_will_run(owner_client, main_env):
    html = owner_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
    assert main_env.namespace in html
    assert "Local development cluster" in html


def test_it_never_puts_integer_ids_in_the_page(owner_client, project, main_env):
    html = owner_client.get(reverse("environments:settings", args=[main_env.public_id])).content.decode()
    for pk in {project.pk, main_env.pk, project.space.pk}:
        for prefix in ("/environments/", "/projects/", "/spaces/"):
            assert f"{prefix}{pk}/" not in html


def test_it_sends_csrf_with_every_htmx_request(owner_client, main_env):
    html = owner_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
    assert """<body hx-headers='{"X-CSRFToken": \"""" in html
    assert "django_htmx/htmx-2.min.js" in html


@pytest.mark.parametrize("url_name", list(TABS))
def test_it_keeps_the_query_count_flat_in_the_number_of_environments(
    owner_client, project, owner, main_env, url_name, django_assert_num_queries, django_assert_max_num_queries
):
    url = reverse(url_name, args=[main_env.public_id])
    assert project.environments.count() == 1
    with django_assert_max_num_queries(10) as first:
        owner_client.get(url)
    baseline = len(first.captured_queries)
    for index in range(9):
        make_environment(project, by=owner, name=f"env {index}")
    assert project.environments.count() == 10
    with django_assert_num_queries(baseline):
        response = owner_client.get(url)
    assert response.content.decode().count("data-env-option") >= 10
