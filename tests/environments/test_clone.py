"""Add by Cloning: every service copied, stopped; no secrets; the missing keys listed; Start All."""

from __future__ import annotations

import pytest
from django.urls import reverse

from environments import actions
from environments.models import Environment, EnvironmentVariable
from services import actions as service_actions
from services.models import Revision, Service
from tests.environments.travel import enqueued, make_shop
from tests.factories import local_cluster, make_project

pytestmark = pytest.mark.django_db


def clone(client, source, name="qa", headers=None):
    url = reverse("environments:create", args=[source.project.public_id])
    data = {"mode": "clone", "source": source.public_id, "name": name, "cluster": local_cluster().pk}
    return client.post(url, data, headers=headers or {})


def test_it_clones_every_service_stopped_without_secrets(owner_client, main_env, owner, django_capture_on_commit_callbacks):
    make_shop(main_env, owner)
    actions.set_variables(acting_user=owner, environment=main_env, values={"DATABASE_URL": "postgres://x"}, is_secret=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    assert response.status_code == 302 and response["Location"] == reverse("environments:detail", args=[qa.public_id])
    services = list(qa.services.order_by("name"))
    assert [s.name for s in services] == ["db", "web", "worker"]
    for service in services:
        source = main_env.services.get(name=service.name)
        expected = source.snapshot()
        # The custom domain stays with the source: one host, one service on a cluster.
        if service.name == "web":
            expected["custom_domains"] = []
        assert service.snapshot() == expected
        assert (service.desired_state, service.status) == ("stopped", "stopped")
        assert list(service.revisions.values_list("number", "cause")) == [(1, "clone")]
    assert not EnvironmentVariable.objects.filter(environment=qa).exists()
    assert actions.missing_secret_keys(qa) == ["DATABASE_URL", "DB_PASSWORD"]
    tasks = enqueued(callbacks)
    assert ("environments.tasks.reconcile_environment", (qa.pk, [s.pk for s in services])) in tasks


def test_a_cloned_card_says_where_it_came_from_and_who_cloned_it(owner_client, member_client, main_env, owner, member, django_assert_max_num_queries):
    make_shop(main_env, owner)
    clone(member_client, main_env)
    qa = Environment.objects.get(name="qa")
    page = reverse("environments:detail", args=[qa.public_id])
    html = owner_client.get(page).content.decode()
    assert html.count("Cloned from <strong>main</strong> by <strong>member</strong>") == 3
    # The clone's name outlives a rename of the source, and the cards still cost no query each.
    main_env.name = "production"
    main_env.save(update_fields=["name"])
    with django_assert_max_num_queries(40) as counted:
        html = owner_client.get(page).content.decode()
    assert html.count("Cloned from <strong>main</strong> by <strong>member</strong>") == 3
    Service.objects.filter(environment=qa, name="db").update(cloned_by=owner)
    with django_assert_max_num_queries(len(counted.captured_queries)):
        html = owner_client.get(page).content.decode()
    assert "Cloned from <strong>main</strong> by <strong>owner</strong>" in html
    # Once deployed in qa, the card says who deployed it.
    web = qa.services.get(name="web")
    service_actions.redeploy_service(owner, web)
    card = owner_client.get(page).content.decode()
    assert "Deployed by <strong>owner</strong>" in card
    assert card.count("Cloned from <strong>main</strong>") == 2


def test_it_lists_the_missing_secrets_on_settings_until_they_are_set(owner_client, main_env, owner):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    url = reverse("environments:settings", args=[qa.public_id])
    body = owner_client.get(url).content.decode()
    assert "These secrets are referenced but not set: <code>DATABASE_URL</code>, <code>DB_PASSWORD</code>." in body
    actions.set_variables(acting_user=owner, environment=qa, values={"DATABASE_URL": "a", "DB_PASSWORD": "b"}, is_secret=True)
    assert "referenced but not set" not in owner_client.get(url).content.decode()


def test_it_starts_all_cloned_services_once_their_secrets_are_set(owner_client, main_env, owner, htmx_headers):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    actions.set_variables(acting_user=owner, environment=qa, values={"DATABASE_URL": "a", "DB_PASSWORD": "b"}, is_secret=True)
    response = owner_client.post(reverse("services:start-all", args=[qa.public_id]), headers=htmx_headers)
    assert response.status_code == 200
    assert set(qa.services.values_list("desired_state", "status")) == {("running", "deploying")}
    assert "Starting 3 services." in response.content.decode()


def test_it_refuses_start_all_while_a_secret_is_missing_naming_it_and_where_to_set_it(owner_client, main_env, owner, htmx_headers):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    actions.set_variables(acting_user=owner, environment=qa, values={"DATABASE_URL": "a"}, is_secret=True)
    response = owner_client.post(reverse("services:start-all", args=[qa.public_id]), headers=htmx_headers)
    body = response.content.decode()
    assert response.status_code == 200
    assert (
        "Cannot start db: this environment has no secret DB_PASSWORD. Set it in Settings → Secret Management, then start again."
        in body
    )
    settings_url = reverse("environments:settings", args=[qa.public_id]) + "#secrets"
    assert f'<a href="{settings_url}" data-set-secrets>Set secrets</a>' in body
    # All or nothing, as for the allocation: the web service, whose secret is set, stays stopped too.
    assert set(qa.services.values_list("desired_state", "status")) == {("stopped", "stopped")}
    # The db card on the page says the same and links to Secret Management.
    body = owner_client.get(reverse("environments:detail", args=[qa.public_id])).content.decode()
    db = qa.services.get(name="db")
    card = body[body.index(f'id="service-{db.public_id}"') :]
    card = card[: card.index("</article>")]
    assert "Cannot start: this environment has no secret <code>DB_PASSWORD</code>. Set it in" in card
    assert f'<a href="{settings_url}">Secret Management</a>' in card
    web = qa.services.get(name="web")
    web_card = body[body.index(f'id="service-{web.public_id}"') :]
    assert "Cannot start" not in web_card[: web_card.index("</article>")]


def test_it_refuses_start_all_from_a_plain_form_with_the_message_on_the_page(owner_client, main_env, owner):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    response = owner_client.post(reverse("services:start-all", args=[qa.public_id]), follow=True)
    body = response.content.decode()
    assert "Cannot start db, web: this environment has no secrets DATABASE_URL, DB_PASSWORD. Set them in" in body
    assert not qa.services.filter(desired_state="running").exists()


def test_it_refuses_start_on_a_card_while_its_secret_is_missing(owner_client, member_client, main_env, owner, htmx_headers):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    db = qa.services.get(name="db")
    url = reverse("services:start", args=[db.public_id])
    body = member_client.post(url, headers=htmx_headers).content.decode()
    assert "Cannot start db: this environment has no secret DB_PASSWORD." in body
    assert "Cannot start: this environment has no secret <code>DB_PASSWORD</code>." in body
    db.refresh_from_db()
    assert (db.desired_state, db.status) == ("stopped", "stopped")
    # A service that reads no secret starts.
    worker = qa.services.get(name="worker")
    member_client.post(reverse("services:start", args=[worker.public_id]), headers=htmx_headers)
    worker.refresh_from_db()
    assert worker.desired_state == "running"
    # Once set, the same button starts it.
    actions.set_variables(acting_user=owner, environment=qa, values={"DB_PASSWORD": "b"}, is_secret=True)
    body = member_client.post(url, headers=htmx_headers).content.decode()
    assert "Cannot start" not in body
    db.refresh_from_db()
    assert db.desired_state == "running"


def test_it_shows_on_the_stopped_cards_which_secrets_they_lack(owner_client, main_env, owner):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    body = owner_client.get(reverse("environments:detail", args=[qa.public_id])).content.decode()
    assert body.count("data-card-missing-secrets") == 2
    assert "Cannot start: this environment has no secret <code>DATABASE_URL</code>." in body


def test_it_clones_in_a_few_queries_whatever_the_number_of_services(main_env, owner, django_assert_max_num_queries, django_capture_on_commit_callbacks):
    services = [Service(environment=main_env, name=f"s{i:03}", image="nginx:1.27", port=80) for i in range(100)]
    Service.objects.bulk_create(services)
    with django_capture_on_commit_callbacks(execute=False), django_assert_max_num_queries(25):
        qa = actions.clone_environment(acting_user=owner, source=main_env, name="qa", cluster=main_env.cluster)
    assert qa.services.count() == 100
    assert Revision.objects.filter(service__environment=qa, cause="clone").count() == 100


def test_it_needs_a_source_to_clone(owner_client, main_env, htmx_headers):
    url = reverse("environments:create", args=[main_env.project.public_id])
    response = owner_client.post(url, {"mode": "clone", "source": "", "name": "qa", "cluster": local_cluster().pk}, headers=htmx_headers)
    assert "Choose the environment to clone." in response.content.decode()
    assert not Environment.objects.filter(name="qa").exists()


def test_it_refuses_a_source_from_another_project(owner_client, main_env, space, owner, htmx_headers):
    other = make_project(space, by=owner, name="other").environments.get()
    make_shop(other, owner)
    url = reverse("environments:create", args=[main_env.project.public_id])
    response = owner_client.post(
        url, {"mode": "clone", "source": other.public_id, "name": "qa", "cluster": local_cluster().pk}, headers=htmx_headers
    )
    assert "Select a valid choice" in response.content.decode()
    assert not Environment.objects.filter(name="qa").exists()


def test_it_hides_cloning_from_outsiders(outsider_client, main_env):
    assert clone(outsider_client, main_env).status_code == 404
    assert not Environment.objects.filter(name="qa").exists()


def test_it_offers_both_ways_in_the_selector(member_client, main_env):
    body = member_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
    assert "Create as Empty Environment" in body and "Add by Cloning" in body
    assert f'<option value="{main_env.public_id}">main</option>' in body
    assert "Download YAML" in body


def test_it_lists_the_missing_secrets_on_the_information_tab_too(owner_client, main_env, owner, django_assert_max_num_queries):
    make_shop(main_env, owner)
    clone(owner_client, main_env)
    qa = Environment.objects.get(name="qa")
    body = owner_client.get(reverse("environments:detail", args=[qa.public_id])).content.decode()
    assert "These secrets are referenced but not set: <code>DATABASE_URL</code>, <code>DB_PASSWORD</code>." in body
    actions.set_variables(acting_user=owner, environment=qa, values={"DATABASE_URL": "a", "DB_PASSWORD": "b"}, is_secret=True)
    assert "referenced but not set" not in owner_client.get(reverse("environments:detail", args=[qa.public_id])).content.decode()
