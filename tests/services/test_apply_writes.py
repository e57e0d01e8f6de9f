"""What a reconcile writes to the cluster: only what changed since its last apply, counted by the
devcluster's log of write requests."""

from __future__ import annotations

import asyncio
import base64
import math
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from ale_site.celery import app

from clusters.client import client_for
from services import apply, lifecycle, live, queue
from environments.models import Environment, EnvironmentVariable
from environments.tasks import CHUNK_SIZE, WORKLOADS_CHUNK_SIZE, reconcile_environment
from services.forms import ServiceForm
from services.models import Service
from services.tasks import reconcile_service, reconcile_services
from spaces.actions import create_project
from tests.services.test_tasks import deploy

pytestmark = pytest.mark.django_db


@pytest.fixture
def env(fault_cluster, space, owner):
    project = create_project(acting_user=owner, space=space, name="counted", display_name="", cluster=fault_cluster)
    return project.environments.get()


def writes(devcluster, env) -> list[tuple[str, str]]:
    """The write requests about `env`'s namespace since the log was last cleared."""
    return [(method, path) for method, path, _ in devcluster.writes.log() if f"/namespaces/{env.namespace}" in path]


def spec(env, **overrides: Any) -> dict[str, Any]:
    data = {"name": "app", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
            "memory": "64Mi", "replicas": "1", "health_check_path": "/", "capacity": "on_demand", **overrides}
    form = ServiceForm(data, environment=env)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def make_services(env, count: int) -> list[Service]:
    """Rows as a bulk transition leaves them, before anything reached the cluster."""
    with transaction.atomic():
        return [lifecycle.create(env, f"s{index:02d}", spec(env)) for index in range(count)]


def reconcile(service: Service) -> str:
    return reconcile_service.apply(args=[service.pk, service.generation]).get()


def test_it_writes_nothing_when_a_service_is_reconciled_unchanged(env, owner, devcluster):
    service = deploy(env, owner)
    assert reconcile(service) == "applied"
    assert writes(devcluster, env), "the first reconcile wrote nothing"
    devcluster.writes.clear()

    assert reconcile(service) == "applied"
    assert writes(devcluster, env) == []


def test_it_writes_only_the_deployment_of_a_changed_spec(env, owner, devcluster):
    service = deploy(env, owner)
    assert reconcile(service) == "applied"
    devcluster.writes.clear()

    service = deploy(env, owner, service, image="nginx:1.28")
    assert reconcile(service) == "applied"
    assert writes(devcluster, env) == [("PATCH", f"/apis/apps/v1/namespaces/{env.namespace}/deployments/web")]
    deployment = client_for(env.cluster).get("apps/v1", "Deployment", "web", env.namespace)
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"


def test_it_writes_nothing_when_an_environment_of_twenty_unchanged_services_is_reconciled(env, devcluster):
    ids = [service.pk for service in make_services(env, 20)]
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    assert reconcile_services.apply(args=[env.pk, ids]).get() == {"applied": 20}
    deployments = client_for(env.cluster).list("apps/v1", "Deployment", namespace=env.namespace)[0]
    assert len(deployments) == 20
    devcluster.writes.clear()

    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    assert reconcile_services.apply(args=[env.pk, ids]).get() == {"applied": 20}
    assert writes(devcluster, env) == []


def test_it_applies_again_what_the_cluster_lost_when_forced(env, owner, devcluster):
    service = deploy(env, owner)
    assert reconcile(service) == "applied"
    kube = client_for(env.cluster)
    kube.delete("apps/v1", "Deployment", "web", env.namespace)
    # Level-triggered on what it wrote, not on what the cluster holds: the resync forces it.
    assert reconcile(service) == "applied"
    assert kube.get("apps/v1", "Deployment", "web", env.namespace) is None

    assert reconcile_service.apply(args=[service.pk, service.generation, True]).get() == "applied"
    assert kube.get("apps/v1", "Deployment", "web", env.namespace) is not None


def test_it_forgets_what_a_stale_apply_wrote_and_reconciles_again(env, owner, devcluster):
    service = deploy(env, owner)
    stale = Service.objects.get(pk=service.pk)
    deploy(env, owner, service, image="nginx:1.28")
    assert not apply.record_applied(stale, {"apps/v1/Deployment/web": "digest of an older generation"})
    service.refresh_from_db()
    assert service.applied_hashes == {}


@pytest.mark.parametrize("count", [3, 12])
def test_a_chunk_records_what_it_applied_in_queries_that_do_not_grow_with_it(
    env, owner, count, django_assert_num_queries
):
    services = [deploy(env, owner, name=f"web{i}") for i in range(count)]
    stale = Service.objects.get(pk=services[1].pk)
    # A newer generation of one of them is written while the chunk applies the old one.
    deploy(env, owner, services[1], name=services[1].name, image="nginx:1.28")
    applied = [(stale if s.pk == stale.pk else s, {f"apps/v1/Deployment/{s.name}": f"digest {s.pk}"}) for s in services]

    # Savepoint, lock and read the generations, one UPDATE for the kept, one for the stale, release.
    with django_assert_num_queries(5):
        moved = apply.record_applied_many(applied)

    assert [s.pk for s in moved] == [stale.pk]
    rows = {s.pk: s.applied_hashes for s in Service.objects.filter(pk__in=[s.pk for s in services])}
    assert rows[stale.pk] == {}
    assert all(rows[s.pk] == {f"apps/v1/Deployment/{s.name}": f"digest {s.pk}"} for s in services if s.pk != stale.pk)


def received_cards(channel: str, count: int) -> list[str]:
    """The card fragments the environment's group receives, until `count` have arrived."""
    layer = get_channel_layer()

    async def receive() -> list[str]:
        cards: list[str] = []
        while len(cards) < count:
            message = await asyncio.wait_for(layer.receive(channel), timeout=10)
            assert message["type"] == live.PAGE_FRAGMENTS
            cards += [fragment[0] for fragment in message["fragments"] if fragment[0].startswith("service-")]
        return cards

    return async_to_sync(receive)()


def queued(queue_name: str, priority: int) -> int:
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        return channel.client.llen(channel._q_for_pri(queue_name, priority))


def test_it_publishes_a_batchs_cards_and_hands_its_services_over_in_chunks_as_bulk_work(
    env, celery_queue, django_capture_on_commit_callbacks
):
    ids = [service.pk for service in make_services(env, 45)]
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.group_name(env.public_id), channel)

    # In a worker the task's transaction commits; here the test's transaction wraps it.
    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_environment.apply(args=[env.pk, ids]).get() == "applied"
    cards = received_cards(channel, 45)
    assert sorted(cards) == sorted(f"service-{service.public_id}" for service in Service.objects.filter(pk__in=ids))
    # Chunks of the pods first, then of the rest, behind anything a person asked for.
    assert queued(celery_queue, queue.BULK_PRIORITY) == math.ceil(45 / WORKLOADS_CHUNK_SIZE) + math.ceil(45 / CHUNK_SIZE)
    assert queued(celery_queue, queue.PRIORITY) == 0


def test_a_batchs_cards_go_out_once_also_while_the_cluster_is_retried(
    env, devcluster, celery_queue, django_capture_on_commit_callbacks
):
    ids = [service.pk for service in make_services(env, 15)]
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(live.group_name(env.public_id), channel)
    # The cluster refuses the environment's Namespace once: the task is retried.
    devcluster.faults.throttle(retry_after=1, count=1, path=f"/namespaces/{env.namespace}$", method="PATCH")

    with django_capture_on_commit_callbacks(execute=True):
        assert reconcile_environment.apply(args=[env.pk, ids]).get() == "applied"
    namespace = [status for _, path, status in devcluster.writes.log() if path.split("?")[0].endswith(env.namespace)]
    assert namespace == [429, 201]  # refused, then applied by the retry
    cards = received_cards(channel, 15)
    assert sorted(cards) == sorted(f"service-{service.public_id}" for service in Service.objects.filter(pk__in=ids))
    with pytest.raises(TimeoutError):
        async_to_sync(asyncio.wait_for)(layer.receive(channel), timeout=0.5)
    assert queued(celery_queue, queue.BULK_PRIORITY) == math.ceil(15 / WORKLOADS_CHUNK_SIZE) + math.ceil(15 / CHUNK_SIZE)


def test_a_batchs_chunks_leave_the_environment_its_reconcile_applied_alone(env, devcluster):
    ids = [service.pk for service in make_services(env, 12)]
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    env.refresh_from_db()
    token = apply.applied_token(env, apply.cluster_salt(env.cluster))
    variables = EnvironmentVariable._meta.db_table

    with CaptureQueriesContext(connection) as queries:
        assert reconcile_services.apply(args=[env.pk, ids, True, token]).get() == {"workloads started": 12}
    assert not any(variables in query["sql"] for query in queries.captured_queries)

    # Something changed the environment's objects since: the token no longer holds, the chunk
    # applies them again before its services.
    Environment.objects.filter(pk=env.pk).update(applied_hash="")
    devcluster.writes.clear()
    assert reconcile_services.apply(args=[env.pk, ids, False, token]).get() == {"applied": 12}
    assert ("PATCH", f"/api/v1/namespaces/{env.namespace}") in writes(devcluster, env)


def test_a_batch_starts_every_services_pods_before_it_applies_their_services_and_ingresses(env, devcluster):
    ids = [service.pk for service in make_services(env, 12)]
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    devcluster.writes.clear()

    assert reconcile_services.apply(args=[env.pk, ids, True]).get() == {"workloads started": 12}
    kinds = {path.split("/")[-2] for _, path in writes(devcluster, env)}
    assert kinds == {"deployments"}
    assert len(writes(devcluster, env)) == 12
    devcluster.writes.clear()

    # The full pass writes the rest and not the Deployments again.
    assert reconcile_services.apply(args=[env.pk, ids]).get() == {"applied": 12}
    written = writes(devcluster, env)
    assert {path.split("/")[-2] for _, path in written} == {"services", "ingresses"}
    assert len(written) == 24
    devcluster.writes.clear()
    assert reconcile_services.apply(args=[env.pk, ids]).get() == {"applied": 12}
    assert writes(devcluster, env) == []


def test_it_fails_only_the_service_the_cluster_refused_and_hands_a_throttled_one_its_own_retries(
    env, devcluster, celery_queue
):
    first, refused, throttled = make_services(env, 3)
    devcluster.faults.error(422, path=f"/deployments/{refused.name}$", method="PATCH", message="refused by a test")
    devcluster.faults.throttle(retry_after=1, path=f"/deployments/{throttled.name}$", method="PATCH")

    outcome = reconcile_services.apply(args=[env.pk, [first.pk, refused.pk, throttled.pk]]).get()
    assert outcome == {"applied": 1, "failed": 1, "retrying": 1}
    statuses = dict(Service.objects.filter(environment=env).values_list("name", "status"))
    assert statuses == {first.name: "deploying", refused.name: "failed", throttled.name: "deploying"}
    assert Service.objects.get(pk=first.pk).applied_hashes
    assert Service.objects.get(pk=throttled.pk).applied_hashes == {}
    # The throttled one waits for its own reconcile, as bulk work.
    assert queued(celery_queue, queue.BULK_PRIORITY) == 1


class EditsWhileApplying:
    """The real client, but the first time it is asked to apply, another reconcile runs to the
    end first: a variable is changed, and its own reconcile applies it and writes its digest,
    before this apply writes the older state (two worker slots, the other one faster)."""

    def __init__(self, kube, edit) -> None:
        self.kube, self.edit = kube, edit

    def apply(self, manifests):
        edit, self.edit = self.edit, None
        if edit is not None:
            edit()
        return self.kube.apply(manifests)

    def __getattr__(self, name):
        return getattr(self.kube, name)


def test_a_variable_changed_while_the_environment_is_applied_is_applied_again(env, owner, devcluster, celery_queue):
    from environments.actions import set_variables

    kube, salt = client_for(env.cluster), apply.cluster_salt(env.cluster)
    set_variables(acting_user=owner, environment=env, values={"GREETING": "hello"}, is_secret=False)
    stale = Environment.objects.select_related("project__space", "cluster").get(pk=env.pk)

    def edit() -> None:
        set_variables(acting_user=owner, environment=env, values={"GREETING": "bonjour"}, is_secret=False)
        fresh = Environment.objects.select_related("project__space", "cluster").get(pk=env.pk)
        assert apply.apply_environment(kube, fresh, salt=salt)

    assert apply.apply_environment(EditsWhileApplying(kube, edit), stale, salt=salt)

    def greeting() -> str:
        secret = kube.get("v1", "Secret", "ale-env", env.namespace)
        return base64.b64decode(secret["data"]["GREETING"]).decode()

    # The older apply landed last: the cluster has the old value, but the row does not claim
    # otherwise, and the environment is reconciled again, as a person's change is.
    assert greeting() == "hello"
    assert Environment.objects.get(pk=env.pk).applied_hash == ""
    # Nor does it vouch for the environment to a batch's chunks: they apply it first.
    assert apply.applied_token(stale, salt) is None
    assert queued(celery_queue, queue.PRIORITY) == 1
    assert reconcile_environment.apply(args=[env.pk]).get() == "applied"
    assert greeting() == "bonjour"
    # Now what was applied is what is asked for: nothing more is queued.
    assert queued(celery_queue, queue.PRIORITY) == 1
