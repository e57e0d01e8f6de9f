"""The pages and buttons of services: the deploy modal, the card, the service page.

Every write view is tested for the wrong method, an anonymous visitor, an outsider (404, as for
a missing service), a member, and bad input. Nothing here reaches a broker or a cluster: the
tests' transactions never commit, so no reconcile task is enqueued.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from environments.actions import delete_environment
from environments.models import ClusterEvent, Environment
from services import actions
from services.access import cards_for_environment, get_service_for_user
from services.forms import ServiceForm
from services.models import Revision, Service
from tests.factories import make_environment

HX = {"HTTP_HX_REQUEST": "true"}


def form_data(**overrides: Any) -> dict[str, Any]:
    """What the deploy modal posts for a plain web service."""
    data = {
        "name": "api",
        "kind": "web",
        "source": "image",
        "image": "nginx:1.27",
        "port": "8080",
        "command": "",
        "args": "",
        "env_vars": "",
        "capacity": "on_demand",
        "cpu": "0.25",
        "memory": "256Mi",
        "disk": "",
        "replicas": "1",
        "health_check_path": "/",
        "custom_domains": "",
        "repository_url": "",
    }
    data.update(overrides)
    return data


def make_service(environment, user, **overrides: Any) -> Service:
    form = ServiceForm(form_data(**overrides), environment=environment)
    assert form.is_valid(), form.errors
    return actions.deploy_service(user, environment, form.cleaned_data)


def deploy_url(environment) -> str:
    return reverse("services:deploy", args=[environment.public_id])


def service_url(name: str, service: Service, *args: Any) -> str:
    return reverse(f"services:{name}", args=[service.public_id, *args])


@pytest.fixture
def service(main_env, owner) -> Service:
    return make_service(main_env, owner)


class TestDeploy:
    def test_it_opens_the_modal_for_htmx(self, member_client, main_env):
        response = member_client.get(deploy_url(main_env), **HX)
        html = response.content.decode()
        assert response.status_code == 200
        assert html.lstrip().startswith('<dialog id="modal"')
        assert f'hx-post="{deploy_url(main_env)}"' in html
        assert 'name="health_check_path"' in html and 'value="/"' in html

    def test_it_prefills_the_branch_with_main(self, member_client, main_env):
        html = member_client.get(deploy_url(main_env), **HX).content.decode()
        [branch] = re.findall(r'<input[^>]*name="branch"[^>]*>', html)
        assert 'value="main"' in branch

    def test_it_shows_a_whole_page_without_javascript(self, member_client, main_env):
        response = member_client.get(deploy_url(main_env))
        html = response.content.decode()
        assert "<dialog" not in html
        assert f'action="{deploy_url(main_env)}"' in html
        assert "hx-post" not in html.split('class="deploy-form"')[1].split(">")[0]

    def test_it_deploys_and_returns_the_card_for_htmx(self, member_client, member, main_env):
        response = member_client.post(deploy_url(main_env), form_data(name="web", cpu="0.5", replicas="2"), **HX)
        service = Service.objects.get(environment=main_env, name="web")
        assert response.status_code == 200
        assert response["HX-Retarget"] == "#service-grid"
        assert response["HX-Reswap"] == "beforeend"
        assert response["HX-Trigger-After-Swap"] == "ale:modal-close"
        html = response.content.decode()
        assert f'id="service-{service.public_id}"' in html
        assert "Deploying" in html
        assert (service.cpu_millicores, service.replicas, service.deployed_by) == (500, 2, member)
        revision = service.revisions.get()
        assert (revision.number, revision.created_by, revision.cause) == (1, member, "deploy")

    def test_it_redirects_to_the_environment_without_javascript(self, member_client, main_env):
        response = member_client.post(deploy_url(main_env), form_data())
        assert response.url == reverse("environments:detail", args=[main_env.public_id])
        assert Service.objects.filter(environment=main_env, name="api").exists()

    def test_it_deploys_a_tcp_service_with_a_disk(self, owner_client, main_env):
        owner_client.post(deploy_url(main_env), form_data(name="db", kind="tcp", image="postgres:16", port="5432", disk="10Gi"))
        service = Service.objects.get(name="db")
        assert (service.kind, service.disk_mib, service.private_address) == ("tcp", 10240, "db:5432")
        page = owner_client.get(service_url("detail", service)).content.decode()
        assert "256 MiB · 10 GiB disk at <code>/data</code>" in page

    @pytest.mark.parametrize(
        ("field", "value", "message"),
        [
            ("name", "Bad_Name", "lowercase letters, digits and hyphens"),
            ("image", "not an image", "An image reference has no spaces."),
            ("port", "70000", "A port is a whole number from 1 to 65535."),
            ("cpu", "0.05", "Give at least 0.1 vCPU."),
            ("memory", "lots", "Give the memory in MiB or GiB"),
            ("replicas", "0", "Replicas is a whole number from 1 to 50."),
            ("health_check_path", "healthz", "The health-check path starts with /"),
            ("custom_domains", "http://shop.example.com/x", "give only the host name"),
            ("env_vars", "1BAD=x", "is not a valid variable name"),
            ("disk", "1Gi", "Only TCP services"),
        ],
    )
    def test_it_refuses_bad_input_field_by_field(self, member_client, main_env, field, value, message):
        response = member_client.post(deploy_url(main_env), form_data(**{field: value}), **HX)
        html = response.content.decode()
        # 200 so that htmx swaps the modal with its errors in.
        assert response.status_code == 200
        assert '<dialog id="modal"' in html
        assert message in html
        # The message sits in the field it is about.
        field_html = html.split(f'name="{field}"')[1].split('<div class="field')[0]
        assert message.split("“")[0][:20] in field_html
        assert not Service.objects.filter(environment=main_env).exists()

    def test_it_answers_422_with_the_page_without_javascript(self, member_client, main_env):
        response = member_client.post(deploy_url(main_env), form_data(port="0"))
        assert response.status_code == 422
        assert "A port is a whole number from 1 to 65535." in response.content.decode()

    def test_it_refuses_a_name_already_used(self, member_client, main_env, service):
        response = member_client.post(deploy_url(main_env), form_data(name=service.name), **HX)
        assert "This environment already has a service with this name." in response.content.decode()
        assert main_env.services.count() == 1

    def test_it_refuses_the_wrong_method(self, member_client, main_env):
        assert member_client.put(deploy_url(main_env)).status_code == 405

    def test_it_sends_anonymous_visitors_to_login(self, client, main_env):
        response = client.post(deploy_url(main_env), form_data())
        assert response.status_code == 302 and response.url.startswith(reverse("login"))
        assert not Service.objects.exists()

    def test_it_hides_the_environment_from_outsiders(self, outsider_client, main_env):
        assert outsider_client.get(deploy_url(main_env), **HX).status_code == 404
        assert outsider_client.post(deploy_url(main_env), form_data(), **HX).status_code == 404
        assert not Service.objects.exists()

    def test_it_refuses_an_environment_being_deleted(self, owner_client, owner, project, main_env):
        staging = make_environment(project, by=owner, name="staging")
        delete_environment(acting_user=owner, environment=staging)
        assert owner_client.post(deploy_url(staging), form_data(), **HX).status_code == 404


class TestEdit:
    def test_it_opens_the_modal_filled_in(self, member_client, service):
        html = member_client.get(service_url("edit", service), **HX).content.decode()
        assert "Edit api" in html
        assert 'value="nginx:1.27"' in html
        assert "disabled" in html.split('name="name"')[1].split(">")[0]

    def test_it_deploys_a_new_revision(self, member_client, member, service):
        response = member_client.post(service_url("edit", service), form_data(image="nginx:1.28", name="other"), **HX)
        service.refresh_from_db()
        assert response["HX-Retarget"] == f"#service-{service.public_id}"
        assert (service.name, service.image, service.deployed_by) == ("api", "nginx:1.28", member)
        assert list(service.revisions.values_list("number", flat=True)) == [2, 1]

    def test_it_keeps_the_modal_open_on_bad_input(self, member_client, service):
        html = member_client.post(service_url("edit", service), form_data(image="UPPER CASE"), **HX).content.decode()
        assert '<dialog id="modal"' in html and "An image reference has no spaces." in html
        assert service.revisions.count() == 1

    def test_it_refuses_the_wrong_method_and_outsiders(self, member_client, outsider_client, client, service):
        assert member_client.delete(service_url("edit", service)).status_code == 405
        assert outsider_client.post(service_url("edit", service), form_data()).status_code == 404
        assert client.get(service_url("edit", service)).status_code == 302


class TestButtons:
    @pytest.mark.parametrize("verb", ["start", "stop", "redeploy"])
    def test_it_refuses_get(self, member_client, service, verb):
        assert member_client.get(service_url(verb, service)).status_code == 405

    @pytest.mark.parametrize("verb", ["start", "stop", "redeploy", "delete"])
    def test_it_hides_the_service_from_outsiders(self, outsider_client, service, verb):
        generation = service.generation
        assert outsider_client.post(service_url(verb, service), **HX).status_code == 404
        service.refresh_from_db()
        assert service.generation == generation

    @pytest.mark.parametrize("verb", ["start", "stop", "redeploy", "delete"])
    def test_it_sends_anonymous_visitors_to_login(self, client, service, verb):
        response = client.post(service_url(verb, service))
        assert response.status_code == 302 and response.url.startswith(reverse("login"))

    def test_it_stops_and_starts_with_the_card_in_return(self, member_client, service):
        html = member_client.post(service_url("stop", service), **HX).content.decode()
        service.refresh_from_db()
        assert service.desired_state == "stopped"
        assert f'id="service-{service.public_id}"' in html and "Stopping" in html
        assert service_url("start", service) in html and service_url("stop", service) not in html

        html = member_client.post(service_url("start", service), **HX).content.decode()
        service.refresh_from_db()
        assert (service.desired_state, service.status) == ("running", "deploying")
        assert service_url("stop", service) in html

    def test_it_redeploys_as_a_new_revision(self, member_client, member, service):
        member_client.post(service_url("redeploy", service), **HX)
        revision = service.revisions.first()
        assert (revision.number, revision.cause, revision.created_by) == (2, "redeploy", member)

    def test_it_redirects_back_without_javascript(self, member_client, service):
        response = member_client.post(service_url("stop", service))
        assert response.url == reverse("environments:detail", args=[service.environment.public_id])
        response = member_client.post(service_url("start", service), {"next": service_url("detail", service)})
        assert response.url == service_url("detail", service)
        # Never to another site.
        response = member_client.post(service_url("stop", service), {"next": "https://evil.example/"})
        assert response.url == reverse("environments:detail", args=[service.environment.public_id])

    def test_it_asks_before_deleting(self, member_client, service):
        html = member_client.get(service_url("delete", service), **HX).content.decode()
        assert '<dialog id="modal"' in html and "Delete api?" in html
        html = member_client.get(service_url("delete", service)).content.decode()
        assert "<dialog" not in html and "Delete service" in html
        service.refresh_from_db()
        assert service.status != "deleting"

    def test_it_says_that_a_disk_and_its_data_go_with_the_service(self, member_client, main_env, owner, service):
        db = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi")
        for headers in (HX, {}):
            html = member_client.get(service_url("delete", db), **headers).content.decode()
            assert "Its disk (2 GiB, mounted at <code>/data</code>) is deleted too, with all the data on it." in html
        assert "Its disk" not in member_client.get(service_url("delete", service), **HX).content.decode()

    def test_it_shows_why_an_edit_cannot_shrink_a_disk(self, member_client, main_env, owner):
        db = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi")
        data = form_data(name="db", kind="tcp", image="postgres:16", port="5432", disk="1Gi")
        html = member_client.post(service_url("edit", db), data, **HX).content.decode()
        assert "a disk can grow but never shrink" in html
        db.refresh_from_db()
        assert (db.disk_mib, db.revisions.count()) == (2048, 1)

    def test_it_deletes(self, member_client, service):
        response = member_client.post(service_url("delete", service), **HX)
        service.refresh_from_db()
        assert service.status == "deleting"
        assert response["HX-Trigger-After-Swap"] == "ale:modal-close"
        html = response.content.decode()
        # A card being deleted has no buttons left.
        assert "Deleting" in html and service_url("start", service) not in html and service_url("stop", service) not in html

    def test_it_refuses_to_act_on_a_service_being_deleted(self, member_client, owner, service):
        actions.delete_service(owner, service)
        response = member_client.post(service_url("start", service), **HX)
        service.refresh_from_db()
        assert service.status == "deleting"
        assert "This service is being deleted." in response.content.decode()


class TestStartAll:
    def url(self, environment) -> str:
        return reverse("services:start-all", args=[environment.public_id])

    def test_it_starts_every_stopped_service(self, member_client, owner, main_env):
        stopped = [make_service(main_env, owner, name=name) for name in ("a", "b")]
        running = make_service(main_env, owner, name="c")
        for service in stopped:
            actions.stop_service(owner, service)
        generation = Service.objects.get(pk=running.pk).generation
        response = member_client.post(self.url(main_env), **HX)
        html = response.content.decode()
        assert "Starting 2 services." in html
        # The progress banner and the message, out of band; the cards come over the socket.
        assert "Starting 0 of 2 services" in html and html.count('hx-swap-oob="true"') == 2
        assert 'id="service-' not in html
        assert set(main_env.services.values_list("desired_state", flat=True)) == {"running"}
        assert Service.objects.get(pk=running.pk).generation == generation

    def test_it_says_when_there_is_nothing_to_start(self, member_client, main_env, service):
        response = member_client.post(self.url(main_env), follow=True)
        assert "No stopped services to start." in response.content.decode()

    def test_it_refuses_get_anonymous_and_outsiders(self, client, member_client, outsider_client, owner, main_env, service):
        actions.stop_service(owner, service)
        assert member_client.get(self.url(main_env)).status_code == 405
        assert client.post(self.url(main_env)).status_code == 302
        assert outsider_client.post(self.url(main_env)).status_code == 404
        service.refresh_from_db()
        assert service.desired_state == "stopped"

    def test_it_is_in_the_selector(self, member_client, main_env):
        html = member_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
        assert f'action="{self.url(main_env)}"' in html and "Start All" in html


class TestServicePage:
    def test_it_lists_revisions_newest_first_with_rollback_on_older_ones(self, member_client, owner, member, service):
        form = ServiceForm(form_data(image="nginx:1.28"), environment=service.environment, service=service)
        assert form.is_valid()
        actions.deploy_service(member, service.environment, form.cleaned_data, service=service)
        html = member_client.get(service_url("detail", service)).content.decode()
        assert html.index("#2") < html.index("#1")
        assert service_url("rollback", service, 1) in html
        assert service_url("rollback", service, 2) not in html
        assert "owner" in html and "member" in html
        assert "api:8080" in html and "http://api-" in html

    def test_it_links_to_the_log_view_and_the_terminal(self, member_client, owner_client, service):
        html = member_client.get(service_url("detail", service)).content.decode()
        assert f'href="{service_url("logs", service)}" data-link="logs">Log view</a>' in html
        assert f'href="{service_url("terminal", service)}" data-link="terminal">Terminal</a>' in html
        # Where the environment keeps the terminal for owners, a member is not sent to a refusal.
        Environment.objects.filter(pk=service.environment_id).update(terminal_access=Environment.TerminalAccess.OWNERS_ONLY)
        html = member_client.get(service_url("detail", service)).content.decode()
        assert "Log view</a>" in html and service_url("terminal", service) not in html
        assert f'href="{service_url("terminal", service)}"' in owner_client.get(service_url("detail", service)).content.decode()

    def test_it_costs_the_same_queries_however_many_revisions(self, member_client, member, service, django_assert_max_num_queries):
        for _ in range(5):
            actions.redeploy_service(member, service)
        with django_assert_max_num_queries(8):
            member_client.get(service_url("detail", service))

    def test_it_hides_the_service_from_outsiders_and_anonymous(self, client, outsider_client, member_client, service):
        assert outsider_client.get(service_url("detail", service)).status_code == 404
        assert client.get(service_url("detail", service)).status_code == 302
        assert member_client.post(service_url("detail", service)).status_code == 405


class TestRollback:
    def test_it_deploys_the_old_spec_as_a_new_revision(self, member_client, member, service):
        form = ServiceForm(form_data(image="nginx:1.28", replicas="3"), environment=service.environment, service=service)
        assert form.is_valid()
        actions.deploy_service(member, service.environment, form.cleaned_data, service=service)
        response = member_client.post(service_url("rollback", service, 1))
        assert response.url == service_url("detail", service)
        service.refresh_from_db()
        assert (service.image, service.replicas) == ("nginx:1.27", 1)
        latest = service.revisions.first()
        assert (latest.number, latest.cause, latest.created_by) == (3, "rollback", member)

    def test_it_refuses_a_revision_that_does_not_exist(self, member_client, service):
        assert member_client.post(service_url("rollback", service, 99)).status_code == 404
        assert service.revisions.count() == 1

    def test_it_refuses_a_revision_of_another_service(self, member_client, owner, main_env, service):
        other = make_service(main_env, owner, name="other", image="redis:7")
        Revision.objects.filter(service=other).update(number=5)
        assert member_client.post(service_url("rollback", service, 5)).status_code == 404

    def test_it_asks_first_naming_the_revision_and_its_image(self, member_client, member, service):
        form = ServiceForm(form_data(image="nginx:1.28"), environment=service.environment, service=service)
        assert form.is_valid()
        actions.deploy_service(member, service.environment, form.cleaned_data, service=service)
        # The service page links to the question; it does not post.
        html = member_client.get(service_url("detail", service)).content.decode()
        assert f'href="{service_url("rollback", service, 1)}"' in html
        assert f'action="{service_url("rollback", service, 1)}"' not in html
        for headers in ({}, {"HTTP_HX_REQUEST": "true"}):
            response = member_client.get(service_url("rollback", service, 1), **headers)
            assert response.status_code == 200
            html = response.content.decode()
            assert "Roll back api to revision #1?" in html
            assert "<code>nginx:1.27</code>" in html and "<code>nginx:1.28</code>" in html
            assert f'action="{service_url("rollback", service, 1)}"' in html
        assert html.lstrip().startswith("<dialog")
        # Asking changed nothing.
        service.refresh_from_db()
        assert (service.image, service.revisions.count()) == ("nginx:1.28", 2)

    def test_it_refuses_anonymous_and_outsiders(self, client, member_client, outsider_client, service):
        assert outsider_client.get(service_url("rollback", service, 1)).status_code == 404
        assert member_client.put(service_url("rollback", service, 1)).status_code == 405
        assert client.post(service_url("rollback", service, 1)).status_code == 302
        assert outsider_client.post(service_url("rollback", service, 1)).status_code == 404
        assert service.revisions.count() == 1


class TestCard:
    def render(self, service: Service) -> str:
        return render_to_string("services/_card.html", {"service": service})

    def test_it_shows_a_web_service(self, owner, main_env):
        service = make_service(
            main_env, owner, name="shop", capacity="spot", repository_url="https://github.com/acme/shop.git"
        )
        html = self.render(get_service_for_user(owner, service.public_id))
        assert f'href="{service.access_url}" target="_blank" rel="noopener">Access</a>' in html
        assert "Copy Address" not in html
        assert ">Spot<" in html
        assert 'href="https://github.com/acme/shop.git"' in html and ">Repository<" in html
        assert "Deployed by <strong>owner</strong>" in html
        assert "0 / 1 ready" in html

    def test_it_shows_a_tcp_service_address(self, owner, main_env):
        service = make_service(main_env, owner, name="db", kind="tcp", image="postgres:16", port="5432")
        html = self.render(get_service_for_user(owner, service.public_id))
        assert 'data-copy="db:5432"' in html and "Copy Address" in html
        assert ">Access<" not in html and ">Spot<" not in html and ">Repository<" not in html

    def test_it_says_why_a_service_failed(self, owner, service):
        Service.objects.filter(pk=service.pk).update(status="failed", status_reason="The image nginx:nope was not found.")
        html = self.render(get_service_for_user(owner, service.public_id))
        assert 'class="status status-failed">Failed<' in html
        assert 'role="alert">The image nginx:nope was not found.<' in html

    def test_it_renders_without_queries(self, owner, main_env, service, django_assert_num_queries):
        loaded = get_service_for_user(owner, service.public_id)
        # A card alone (an action's answer, a live push) reads its own sparklines, out-of-memory
        # kills and revision usage; a page of cards has them loaded for all at once.
        with django_assert_num_queries(3):
            self.render(loaded)
        cards = cards_for_environment(main_env)
        with django_assert_num_queries(0):
            self.render(cards[0])


class TestEnvironmentPage:
    def url(self, environment, tab: str = "detail") -> str:
        return reverse(f"environments:{tab}", args=[environment.public_id])

    def test_it_shows_the_cards_and_the_deploy_button(self, member_client, owner, main_env):
        a = make_service(main_env, owner, name="a")
        b = make_service(main_env, owner, name="b")
        html = member_client.get(self.url(main_env)).content.decode()
        assert html.index(f'id="service-{a.public_id}"') < html.index(f'id="service-{b.public_id}"')
        assert f'hx-get="{deploy_url(main_env)}"' in html and f'href="{deploy_url(main_env)}"' in html
        assert f'ws-connect="/ws/environments/{main_env.public_id}/"' in html
        assert "django_htmx/ext/hx-ws-2" in html

    def test_it_costs_the_same_queries_for_1_and_20_services(self, member_client, owner, member, main_env, django_assert_num_queries):
        make_service(main_env, owner, name="s0")
        member_client.get(self.url(main_env))  # warm the session and the content types
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as one:
            member_client.get(self.url(main_env))
        for index in range(1, 20):
            # Different deployers: each card's user comes with the page's one query.
            make_service(main_env, member if index % 2 else owner, name=f"s{index}")
        with django_assert_num_queries(len(one.captured_queries)):
            html = member_client.get(self.url(main_env)).content.decode()
        assert html.count('class="card service-card"') == 20
        assert len(one.captured_queries) <= 15

    def test_it_lists_events_newest_first(self, member_client, main_env, service):
        now = timezone.now()
        for index, (reason, kind) in enumerate([("Pulled", "Normal"), ("BackOff", "Warning")]):
            ClusterEvent.objects.create(
                environment=main_env, service=service, uid=f"u{index}", type=kind, reason=reason,
                message=f"message {reason}", involved_kind="Pod", involved_name="api-1",
                first_seen=now, last_seen=now + timezone.timedelta(minutes=index), count=index + 1,
            )
        html = member_client.get(self.url(main_env, "events")).content.decode()
        assert html.index("BackOff") < html.index("Pulled")
        assert 'class="event-type event-type-warning">Warning<' in html
        assert "message BackOff" in html and "Pod/api-1" in html

    def test_it_costs_the_same_queries_for_the_events_tab(self, member_client, main_env, service, django_assert_max_num_queries):
        now = timezone.now()
        ClusterEvent.objects.bulk_create(
            ClusterEvent(environment=main_env, service=service, uid=f"e{i}", reason="Started", first_seen=now, last_seen=now)
            for i in range(30)
        )
        with django_assert_max_num_queries(15):
            member_client.get(self.url(main_env, "events"))
