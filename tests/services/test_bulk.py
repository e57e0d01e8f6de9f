"""Start All and Stop All of a whole environment: one batch whatever the number of services,
one environment task on commit, and the progress banner a user watches while the cluster
carries them."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection
from django.urls import reverse

from clusters.state import DEPLOYMENTS
from environments import yaml_document
from environments.models import Environment
from services import actions, live, progress
from services.forms import ServiceForm
from services.models import Service
from services.observed import write_changes
from spaces.models import AuditEntry, ResourceAllocation
from tests.factories import make_environment
from tests.services.test_observed import deployment, synced_state

pytestmark = pytest.mark.django_db

HX = {"HTTP_HX_REQUEST": "true"}
RECONCILE_ENVIRONMENT = "environments.tasks.reconcile_environment"


def spec(environment: Environment, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "api",
        "kind": "web",
        "source": "image",
        "image": "nginx:1.27",
        "port": "80",
        "cpu": "0.1",
        "memory": "64Mi",
        "replicas": "1",
        "health_check_path": "/",
        "capacity": "on_demand",
    }
    data.update(overrides)
    form = ServiceForm(data, environment=environment)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def make_services(environment: Environment, owner, count: int, *, state: str = "stopped") -> list[Service]:
    """`count` services like the modal deploys them, written at once (deploying hundreds one by
    one would make the test slow, not the code under test)."""
    ResourceAllocation.objects.update_or_create(
        space=environment.project.space,
        defaults={"max_running_services": 1000, "on_demand_cpu_millicores": 100_000, "on_demand_memory_mib": 100_000},
    )
    first = actions.deploy_service(owner, environment, spec(environment, name="s0"))
    snapshot = first.snapshot()
    rest = []
    for number in range(1, count):
        service = Service(environment=environment, name=f"s{number}", generation=1, deployed_by=owner)
        service.apply_snapshot(snapshot)
        rest.append(service)
    Service.objects.bulk_create(rest)
    status = Service.Status.STOPPED if state == "stopped" else Service.Status.RUNNING
    environment.services.update(desired_state=state, status=status)
    return list(environment.services.order_by("pk"))


def enqueued(callbacks) -> list[tuple[str, tuple]]:
    """The tasks the on-commit callbacks send: (task name, args), read from the partials."""
    return [(cb.func.__self__.name, cb.args) for cb in callbacks if hasattr(cb, "func")]


# One count for 10 services and for 100: the batch costs the same whatever its size.
START_ALL_QUERIES = 11
STOP_ALL_QUERIES = 7
# With the services written in one INSERT; SQLite takes at most 999 parameters a statement, so
# Django splits a long bulk insert there (`service_insert_batches`), as the database requires.
YAML_APPLY_QUERIES = 12


def service_insert_batches(count: int) -> int:
    fields = [field for field in Service._meta.concrete_fields if not field.primary_key]
    return math.ceil(count / connection.ops.bulk_batch_size(fields, [None] * count))


@pytest.mark.parametrize("count", [10, 100])
def test_it_starts_all_in_the_same_number_of_queries_whatever_the_number(
    main_env, owner, count, django_assert_num_queries
):
    make_services(main_env, owner, count)
    with django_assert_num_queries(START_ALL_QUERIES):
        assert actions.start_all(owner, main_env) == count
    assert set(main_env.services.values_list("desired_state", "status")) == {("running", "deploying")}


@pytest.mark.parametrize("count", [10, 100])
def test_it_stops_all_in_the_same_number_of_queries_whatever_the_number(
    main_env, owner, count, django_assert_num_queries
):
    make_services(main_env, owner, count, state="running")
    with django_assert_num_queries(STOP_ALL_QUERIES):
        assert actions.stop_all(owner, main_env) == count
    assert set(main_env.services.values_list("desired_state", "status")) == {("stopped", "stopping")}


@pytest.mark.parametrize("count", [10, 100])
def test_it_applies_a_yaml_file_in_the_same_number_of_queries_whatever_the_number(
    main_env, project, owner, count, django_assert_num_queries
):
    make_services(main_env, owner, count, state="running")
    staging = make_environment(project, by=owner, name="staging")
    document = yaml_document.parse_document(yaml_document.export_yaml(main_env).encode(), staging)
    with django_assert_num_queries(YAML_APPLY_QUERIES - 1 + service_insert_batches(count)):
        result = yaml_document.apply_document(owner, staging, document)
    assert len(result.created) == count
    assert staging.services.filter(desired_state="running").count() == count


def test_it_hands_all_of_a_start_all_to_one_environment_task(main_env, owner, django_capture_on_commit_callbacks):
    services = make_services(main_env, owner, 5)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.start_all(owner, main_env)
    assert enqueued(callbacks) == [(RECONCILE_ENVIRONMENT, (main_env.pk, [s.pk for s in services]))]
    # No card is rendered and sent by the request itself: the task publishes them.
    assert len(callbacks) == 1


def test_it_hands_all_of_a_stop_all_to_one_environment_task(main_env, owner, django_capture_on_commit_callbacks):
    services = make_services(main_env, owner, 5, state="running")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.stop_all(owner, main_env)
    assert enqueued(callbacks) == [(RECONCILE_ENVIRONMENT, (main_env.pk, [s.pk for s in services]))]
    assert len(callbacks) == 1


def test_it_builds_first_a_git_service_never_built_when_started_with_others(
    main_env, owner, django_capture_on_commit_callbacks
):
    make_services(main_env, owner, 3)
    git = main_env.services.get(name="s1")
    Service.objects.filter(pk=git.pk).update(source="git", repository_url="https://git.example.com/shop.git", image="")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.start_all(owner, main_env)
    git.refresh_from_db()
    assert git.status == "building"
    build = git.builds.get()
    assert (build.number, build.status) == (1, "queued")
    assert ("services.tasks.run_build", (build.pk,)) in enqueued(callbacks)
    assert set(main_env.services.exclude(pk=git.pk).values_list("status", flat=True)) == {"deploying"}


class TestStopAll:
    def url(self, environment: Environment) -> str:
        return reverse("services:stop-all", args=[environment.public_id])

    def test_it_stops_every_running_service_and_answers_with_the_banner(self, owner_client, owner, main_env):
        make_services(main_env, owner, 3, state="running")
        response = owner_client.post(self.url(main_env), **HX)
        html = response.content.decode()
        assert response.status_code == 200
        assert "Stopping 3 services." in html
        assert 'id="environment-progress"' in html and "Stopping 0 of 3 services" in html
        # No card in the answer: they arrive over the page's socket.
        assert 'id="service-' not in html
        assert set(main_env.services.values_list("desired_state", flat=True)) == {"stopped"}

    def test_it_lets_a_member_stop_all(self, member_client, owner, main_env):
        make_services(main_env, owner, 2, state="running")
        response = member_client.post(self.url(main_env), follow=True)
        assert "Stopping 2 services." in response.content.decode()
        assert set(main_env.services.values_list("desired_state", flat=True)) == {"stopped"}

    def test_it_refuses_get_anonymous_and_outsiders(self, client, member_client, outsider_client, owner, main_env):
        make_services(main_env, owner, 2, state="running")
        assert member_client.get(self.url(main_env)).status_code == 405
        assert client.post(self.url(main_env)).status_code == 302
        assert outsider_client.post(self.url(main_env)).status_code == 404
        assert outsider_client.post(self.url(main_env), **HX).status_code == 404
        assert set(main_env.services.values_list("desired_state", flat=True)) == {"running"}
        assert not AuditEntry.objects.filter(action="service.stop_all").exists()

    def test_it_says_when_there_is_nothing_to_stop(self, member_client, owner, main_env):
        make_services(main_env, owner, 1)
        response = member_client.post(self.url(main_env), follow=True)
        assert "No running services to stop." in response.content.decode()

    def test_it_records_who_stopped_what(self, owner_client, owner, main_env):
        make_services(main_env, owner, 2, state="running")
        owner_client.post(self.url(main_env))
        entry = AuditEntry.objects.get(action="service.stop_all")
        assert entry.actor == owner
        assert entry.summary == f"Stopped all 2 running services of {main_env.name}"
        assert entry.details == {"services": ["s0", "s1"]}
        assert entry.get_action_display() == "Stop All"

    def test_it_is_in_the_selector(self, member_client, main_env):
        html = member_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
        assert f'action="{self.url(main_env)}"' in html and "Stop All" in html


class TestProgress:
    def test_it_counts_the_services_of_the_batch_the_cluster_carried(self, main_env, owner):
        services = make_services(main_env, owner, 4)
        actions.start_all(owner, main_env)
        main_env.refresh_from_db()
        Service.objects.filter(pk__in=[services[0].pk, services[1].pk]).update(status="running")
        Service.objects.filter(pk=services[2].pk).update(status="failed")
        html = progress.render_for(main_env)
        assert "Starting 3 of 4 services" in html
        assert 'role="status"' in html and 'aria-live="polite"' in html

    def test_it_shows_the_banner_on_the_environment_page(self, member_client, owner, main_env):
        make_services(main_env, owner, 3, state="running")
        actions.stop_all(owner, main_env)
        html = member_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
        assert "Stopping 0 of 3 services" in html

    def test_it_shows_an_empty_banner_when_nothing_is_in_flight(self, member_client, owner, main_env):
        make_services(main_env, owner, 2)
        html = member_client.get(reverse("environments:detail", args=[main_env.public_id])).content.decode()
        assert '<div id="environment-progress" role="status" aria-live="polite"></div>' in html

    def test_it_says_when_all_are_done_and_forgets_the_batch(self, main_env, owner, django_capture_on_commit_callbacks):
        services = make_services(main_env, owner, 3, state="running")
        actions.stop_all(owner, main_env)
        main_env.services.update(status="stopped")
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            progress.publish_for(services)
        assert len(callbacks) == 1
        main_env.refresh_from_db()
        assert main_env.bulk_action == "" and main_env.bulk_service_ids == []
        # The page on load shows no banner any more; the open pages were told it is done.
        assert progress.render_for(main_env) == '<div id="environment-progress" role="status" aria-live="polite"></div>'
        done = progress.render(progress.Progress("stop", 3, 3))
        assert "Stopped 3 services." in done and "<progress" not in done

    def test_it_publishes_nothing_for_an_environment_with_no_batch_in_flight(
        self, main_env, owner, django_capture_on_commit_callbacks
    ):
        services = make_services(main_env, owner, 2, state="running")
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            progress.publish_for(services)
        assert callbacks == []


def test_the_watcher_publishes_the_banner_as_the_cluster_carries_the_batch(
    main_env, owner, django_capture_on_commit_callbacks
):
    """What the watcher writes moves the banner of the pages open on the environment, over the
    channel layer, and the last service done ends the batch."""
    services = make_services(main_env, owner, 2)
    actions.start_all(owner, main_env)
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.group_name(main_env.public_id), channel)

    def banner_after(service: Service) -> str:
        state.apply(DEPLOYMENTS, "ADDED", deployment(service, ready=1))
        with django_capture_on_commit_callbacks(execute=True):
            write_changes(main_env.cluster_id, state, state.take_changes())
        # One message: the card, for the Information tab, and the banner that counts it, for
        # every tab, swapped together.
        message = async_to_sync(receive)()
        fragments = {fragment[0]: fragment for fragment in message["fragments"]}
        assert set(fragments) == {f"service-{service.public_id}", "environment-progress"}
        assert message["tab"] == live.SHOWN_ON_INFORMATION and len(fragments[f"service-{service.public_id}"]) == 2
        key, html, tab = fragments["environment-progress"]
        assert tab is None
        return html

    async def receive() -> dict:
        try:
            return await asyncio.wait_for(layer.receive(channel), 5)
        except TimeoutError:
            statuses = list(main_env.services.values_list("name", "status"))
            raise AssertionError(f"No progress banner was published within 5 s; statuses: {statuses}") from None

    state = synced_state()
    assert "Starting 1 of 2 services…" in banner_after(services[0])
    main_env.refresh_from_db()
    assert main_env.bulk_action == "start"
    assert "Started 2 services." in banner_after(services[1])
    main_env.refresh_from_db()
    assert main_env.bulk_action == ""
