"""The webhook endpoint: what it accepts, what it refuses, and that refusals change nothing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from hooks import actions
from hooks.models import Delivery, ProjectHook
from services.models import Build, Revision, Service
from spaces.models import AuditEntry
from tests.hooks import examples as ex


@pytest.fixture
def hook(project) -> ProjectHook:
    return actions.ensure_hook(project)


def post(hook_id: str, body: bytes, headers: dict[str, str]) -> Any:
    return Client().post(
        reverse("hooks:receive", args=[hook_id]), data=body, content_type="application/json", **headers
    )


def snapshot() -> tuple[int, ...]:
    return (Delivery.objects.count(), Build.objects.count(), Revision.objects.count(), Service.objects.count(),
            AuditEntry.objects.count())  # fmt: skip


@pytest.mark.django_db
def test_it_accepts_a_signed_push_and_stores_it_for_the_worker(hook):
    body = ex.body_of(ex.github_push())
    started = time.monotonic()
    response = post(hook.public_id, body, ex.github_headers(hook.secret, body, "push", delivery="d-1"))
    elapsed = time.monotonic() - started
    assert response.status_code == 202
    delivery = Delivery.objects.get()
    assert (delivery.delivery_id, delivery.provider, delivery.event) == ("d-1", "github", "push")
    assert delivery.processed_at is None
    # The endpoint does no work of its own: the worker builds.
    assert Build.objects.count() == 0
    assert elapsed < 1.0, f"the endpoint took {elapsed:.2f} s"


@pytest.mark.django_db
def test_unknown_hook_bad_signature_and_other_events_answer_alike_and_change_nothing(hook):
    body = ex.body_of(ex.github_push())
    before = snapshot()
    answers = {
        "unknown hook": post("x" * 24, body, ex.github_headers(hook.secret, body, "push")),
        "bad signature": post(hook.public_id, body, ex.github_headers("wrong", body, "push")),
        "no signature": post(hook.public_id, body, {"HTTP_X_GITHUB_EVENT": "push"}),
        "other event": post(hook.public_id, body, ex.github_headers(hook.secret, body, "issues")),
        "gitlab wrong token": post(hook.public_id, ex.body_of(ex.GITLAB_PUSH), ex.gitlab_headers("guess", "Push Hook")),
        "gitea bad signature": post(hook.public_id, body, ex.gitea_headers("wrong", body, "push")),
        "no provider": post(hook.public_id, body, {}),
    }
    assert {name: (r.status_code, r.content) for name, r in answers.items()} == {
        name: (202, b"Accepted.\n") for name in answers
    }
    assert snapshot() == before


@pytest.mark.django_db
def test_a_replayed_delivery_does_nothing(hook):
    body = ex.body_of(ex.github_push())
    headers = ex.github_headers(hook.secret, body, "push", delivery="72d3162e-cc78-11e3-81ab-4c9367dc0958")
    assert post(hook.public_id, body, headers).status_code == 202
    assert post(hook.public_id, body, headers).status_code == 202
    assert Delivery.objects.count() == 1


@pytest.mark.django_db
def test_an_oversized_body_is_refused_unread(hook, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 1000
    body = ex.body_of({**ex.github_push(), "padding": "x" * 2000})
    response = post(hook.public_id, body, ex.github_headers(hook.secret, body, "push"))
    assert response.status_code == 413
    assert b"larger than 1000 bytes" in response.content
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_a_burst_of_fifty_is_rate_limited_without_errors(hook, settings):
    settings.WEBHOOK_RATE_PER_MINUTE = 20
    body = ex.body_of(ex.github_push())
    # The budget is per clock minute: start the burst well inside one.
    if time.time() % 60 > 50:
        time.sleep(60 - time.time() % 60 + 0.1)
    statuses = []
    for number in range(50):
        # Half of them badly signed: the limit counts every knock, signed or not.
        secret = hook.secret if number % 2 == 0 else "wrong"
        statuses.append(post(hook.public_id, body, ex.github_headers(secret, body, "push", delivery=f"burst-{number}")).status_code)
    assert set(statuses) <= {202, 429}, statuses
    assert statuses.count(202) == 20 and statuses.count(429) == 30
    # Only the signed ones within the budget were stored: ten.
    assert Delivery.objects.count() == 10


@pytest.mark.django_db
def test_it_answers_only_post():
    response = Client().get(reverse("hooks:receive", args=["x" * 24]))
    assert response.status_code == 405


@pytest.mark.django_db
def test_gitlab_and_gitea_deliveries_are_stored_with_their_ids(hook):
    body = ex.body_of(ex.GITLAB_PUSH)
    assert post(hook.public_id, body, ex.gitlab_headers(hook.secret, "Push Hook", delivery="gl-1")).status_code == 202
    body = ex.body_of(ex.gitea_pull_request())
    assert post(hook.public_id, body, ex.gitea_headers(hook.secret, body, "pull_request", delivery="gt-1")).status_code == 202
    assert sorted(Delivery.objects.values_list("provider", "event", "delivery_id")) == [
        ("gitea", "pull_request", "gt-1"), ("gitlab", "push", "gl-1"),
    ]  # fmt: skip


@pytest.mark.django_db
def test_a_redelivery_of_a_delivery_never_processed_is_handed_on_again_once_processed_never(hook):
    from django.utils import timezone

    body = ex.body_of(ex.github_push())
    headers = ex.as_lower_headers(ex.github_headers(hook.secret, body, "push", delivery="lost-1"))
    first = actions.accept_delivery(hook.public_id, headers, body)
    # Its task was lost (a broker outage): the Git host's "Redeliver" hands it on again.
    assert actions.accept_delivery(hook.public_id, headers, body) == first
    Delivery.objects.filter(pk=first.pk).update(processed_at=timezone.now())
    assert actions.accept_delivery(hook.public_id, headers, body) is None
    assert Delivery.objects.count() == 1
