"""The service card, templates/services/_card.html: escaping, the building ticker, the live
update variant (`oob`), the forms' csrf token and every link and button."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.middleware.csrf import _unmask_cipher_token, get_token
from django.template.loader import render_to_string
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from services.access import get_service_for_user
from services.models import Service
from tests.services.test_views import make_service

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script> & \'q\''


def render(owner, service: Service, **context: object) -> str:
    request = context.pop("request", None)
    loaded = get_service_for_user(owner, service.public_id)
    return render_to_string("services/_card.html", {"service": loaded, **context}, request=request)


def url(name: str, service: Service) -> str:
    return reverse(f"services:{name}", args=[service.public_id])


def test_hostile_text_is_escaped_everywhere(owner, main_env):
    service = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432")
    # Written past the form's validation, as a cluster's reason or a renamed user could be.
    hostile_user = get_user_model().objects.create(username=HOSTILE)
    Service.objects.filter(pk=service.pk).update(
        name=HOSTILE, status="failed", status_reason=HOSTILE, image=HOSTILE, deployed_by=hostile_user
    )
    html = render(owner, service)
    assert "<script>" not in html
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#x27;q&#x27;"
    assert f'<a href="{url("detail", service)}">{escaped}</a>' in html
    assert f'role="alert">{escaped}</p>' in html
    assert f'title="{escaped}">{escaped}</dd>' in html
    assert f'data-copy="{escaped}:5432"' in html and f"<code>{escaped}:5432</code>" in html
    assert f'aria-label="More actions for {escaped}"' in html
    assert f"Deployed by <strong>{escaped}</strong>" in html
    assert '<span class="avatar avatar-small" aria-hidden="true">&lt;</span>' in html


def test_a_building_service_shows_its_ticker(owner, main_env):
    service = make_service(main_env, owner)
    started = timezone.now() - timedelta(minutes=1, seconds=5)
    Service.objects.filter(pk=service.pk).update(status="building", status_changed_at=started)
    html = render(owner, service)
    ticker = re.search(r'Building · <span data-building-since="(\d+)">(\d+:\d\d)</span>', html)
    assert ticker is not None
    assert int(ticker[1]) == int(started.timestamp())
    assert ticker[2] in ("1:05", "1:06")  # a second may pass between the update and the render
    assert f'data-changed="{int(started.timestamp())}.{started.microsecond:06d}"' in html


def test_oob_marks_the_card_for_an_out_of_band_swap(owner, main_env):
    service = make_service(main_env, owner)
    head = f'<article class="card service-card" id="service-{service.public_id}" data-status="deploying"'
    assert render(owner, service, oob=True).lstrip().startswith(head)
    assert ' hx-swap-oob="true">' in render(owner, service, oob=True).split("\n", 1)[0]
    assert "hx-swap-oob" not in render(owner, service)


def test_each_form_carries_the_csrf_token_of_the_request(owner, main_env):
    service = make_service(main_env, owner)
    request = RequestFactory().get("/")
    secret = _unmask_cipher_token(get_token(request))
    html = render(owner, service, request=request)
    tokens = re.findall(r'<input type="hidden" name="csrfmiddlewaretoken" value="(\w+)">', html)
    # Stop and Redeploy; each token is a fresh mask of the request's secret.
    assert len(tokens) == 2 and {_unmask_cipher_token(token) for token in tokens} == {secret}
    field = f'<input type="hidden" name="csrfmiddlewaretoken" value="{tokens[0]}">'
    assert f'hx-swap="outerHTML">{field}<button type="submit" class="button button-small">Stop</button></form>' in html
    # A live update is rendered outside a request: its forms have no token to give.
    assert "csrfmiddlewaretoken" not in render(owner, service)


def test_the_links_and_buttons_of_a_running_web_service(owner, main_env):
    service = make_service(main_env, owner, name="shop", capacity="spot", repository_url="https://github.com/acme/shop.git")
    html = render(owner, service)
    target = f'hx-target="#service-{service.public_id}" hx-swap="outerHTML"'
    for name in ("stop", "redeploy"):
        assert f'<form method="post" action="{url(name, service)}" hx-post="{url(name, service)}" {target}>' in html
    assert ">Start</button>" not in html
    assert f'href="{url("logs", service)}" data-link="logs">Log view</a>' in html
    assert f'href="{url("terminal", service)}" data-link="terminal">Terminal</a>' in html
    assert f'<a class="menu-item" href="{url("edit", service)}" hx-get="{url("edit", service)}" hx-target="#modal-root">Edit and deploy…</a>' in html
    assert f'<a class="menu-item" href="{url("detail", service)}">Revisions</a>' in html
    assert f'href="{url("delete", service)}" hx-get="{url("delete", service)}" hx-target="#modal-root">Delete…</a>' in html
    assert 'href="https://github.com/acme/shop.git" target="_blank" rel="noopener" data-link="repository">Repository</a>' in html
    assert f'href="{service.access_url}" target="_blank" rel="noopener">Access</a>' in html
    assert '<span class="kind-tag">Web</span>' in html and ">Spot</span>" in html


def test_a_stopped_tcp_service_offers_start_and_its_external_address(owner, main_env):
    main_env.allow_external_tcp = True
    main_env.save(update_fields=["allow_external_tcp"])
    main_env.cluster.external_host = "203.0.113.5"
    main_env.cluster.save(update_fields=["external_host"])
    service = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432")
    Service.objects.filter(pk=service.pk).update(desired_state="stopped", status="stopped", external_node_port=30123)
    html = render(owner, service)
    assert f'action="{url("start", service)}"' in html and "button-primary\">Start</button>" in html
    assert ">Stop</button>" not in html
    assert 'data-copy="203.0.113.5:30123" title="External address (firewall open)">External <code>203.0.113.5:30123</code>' in html
    assert '<span class="kind-tag">TCP</span>' in html and ">Access</a>" not in html


def test_a_deleting_service_has_no_actions(owner, main_env):
    service = make_service(main_env, owner)
    Service.objects.filter(pk=service.pk).update(status="deleting", deployed_by=None)
    html = render(owner, service)
    assert "service-card-actions" not in html and "<form" not in html
    assert '<span class="status status-deleting">Deleting</span>' in html
    assert re.search(r"Deployed <time datetime=", html)


def test_the_deploy_time_reads_just_now_then_minutes_ago(owner, main_env):
    service = make_service(main_env, owner, name="web")
    Service.objects.filter(pk=service.pk).update(deployed_at=timezone.now() - timedelta(seconds=20))
    assert ">just now</time>" in render(owner, service)
    Service.objects.filter(pk=service.pk).update(deployed_at=timezone.now() - timedelta(minutes=5, seconds=3))
    assert ">5\xa0minutes ago</time>" in render(owner, service)
