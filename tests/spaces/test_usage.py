"""The usage panel: used against allocated in the sidebar of every space page."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from services import actions
from services.models import Service
from tests.factories import make_environment
from tests.spaces.helpers import allocate, deploy

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}


def usage_url(space) -> str:
    return reverse("spaces:usage", args=[space.public_id])


def test_it_shows_used_against_allocated(member_client, space, main_env, owner):
    allocate(space)
    deploy(main_env, owner, name="web", cpu="0.25", memory="256Mi", replicas=2)
    deploy(main_env, owner, name="cache", cpu="0.1", memory="128Mi", capacity="spot")
    html = member_client.get(usage_url(space), **HX).content.decode()
    assert html.lstrip().startswith('<section id="usage-panel"')
    assert "0.5 vCPU / 1.0 vCPU" in html  # on-demand
    assert "0.5 GiB / 1 GiB" in html
    assert "0.1 vCPU / 1.0 vCPU" in html  # spot
    assert "128 MiB / 1 GiB" in html
    assert "2 / 4" in html  # running services
    # Members see no link to the owners' pages.
    assert "Audit log" not in html


def test_it_follows_services_starting_and_stopping(member_client, space, main_env, owner):
    service = deploy(main_env, owner, cpu="0.5", memory="512Mi")
    assert "0.5 vCPU / 8.0 vCPU" in member_client.get(usage_url(space), **HX).content.decode()
    actions.stop_service(owner, service)
    assert "0.0 vCPU / 8.0 vCPU" in member_client.get(usage_url(space), **HX).content.decode()


def test_it_does_not_count_a_failed_service_as_running(member_client, owner_client, space, main_env, owner):
    allocate(space)
    deploy(main_env, owner, name="web", cpu="0.1", memory="128Mi")
    broken = deploy(main_env, owner, name="broken", cpu="0.1", memory="128Mi")
    # What the watcher writes when the pods crash: still set to run, status Failed.
    Service.objects.filter(pk=broken.pk).update(status=Service.Status.FAILED)
    html = member_client.get(usage_url(space), **HX).content.decode()
    assert re.search(r'Running</span>\s*<span class="usage-value">1 / 4<', html), html
    assert "1 failed, still counted until stopped" in html
    settings_page = owner_client.get(reverse("spaces:settings", args=[space.public_id])).content.decode()
    assert "1 of 4 <span class=\"muted\">(1 failed, still counted until stopped)</span>" in settings_page
    # Stopped, it leaves the count and the note goes.
    actions.stop_service(owner, Service.objects.get(pk=broken.pk))
    html = member_client.get(usage_url(space), **HX).content.decode()
    assert re.search(r'Running</span>\s*<span class="usage-value">1 / 4<', html)
    assert "failed" not in html


def test_it_refreshes_itself_and_on_every_live_message(member_client, space):
    html = member_client.get(usage_url(space), **HX).content.decode()
    assert 'hx-trigger="every 10s, htmx:wsAfterMessage from:body throttle:2s"' in html


def test_it_links_owners_to_the_allocation(owner_client, space):
    html = owner_client.get(usage_url(space), **HX).content.decode()
    assert reverse("spaces:settings", args=[space.public_id]) in html


def test_it_is_a_whole_page_without_javascript(member_client, space):
    response = member_client.get(usage_url(space))
    assert response.status_code == 200
    assert "<html" in response.content.decode()


def test_it_hides_the_usage_from_outsiders_and_anonymous(outsider_client, client, space):
    assert outsider_client.get(usage_url(space), **HX).status_code == 404
    assert client.get(usage_url(space), **HX).status_code == 302


def test_it_refuses_post(member_client, space):
    assert member_client.post(usage_url(space)).status_code == 405


def test_it_is_in_the_sidebar_of_every_space_page(member_client, space, project, main_env, owner):
    service = deploy(main_env, owner)
    pages = [
        reverse("spaces:detail", args=[space.public_id]),
        reverse("spaces:team", args=[space.public_id]),
        reverse("environments:detail", args=[main_env.public_id]),
        reverse("environments:settings", args=[main_env.public_id]),
        reverse("services:detail", args=[service.public_id]),
    ]
    for page in pages:
        html = member_client.get(page).content.decode()
        assert f'hx-get="{usage_url(space)}"' in html, page
        assert 'hx-trigger="load, every 10s' in html, page


def test_it_costs_the_same_queries_however_many_services(member_client, space, project, main_env, owner, django_assert_max_num_queries):
    deploy(main_env, owner, name="one")
    with django_assert_max_num_queries(8) as first:
        member_client.get(usage_url(space), **HX)
    staging = make_environment(project, by=owner, name="staging")
    for index in range(5):
        deploy(staging, owner, name=f"more{index}", cpu="0.1", memory="64Mi")
    with django_assert_max_num_queries(len(first.captured_queries)):
        member_client.get(usage_url(space), **HX)
