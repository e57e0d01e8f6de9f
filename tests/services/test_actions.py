"""Service verbs: desired state, revisions, and one task enqueued once the change is committed."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import connection, transaction

from environments.actions import delete_environment
from services import actions
from services.forms import ServiceForm
from services.models import Revision, Service
from tests.factories import make_environment

pytestmark = pytest.mark.django_db


def spec(env, service: Service | None = None, **overrides: Any) -> dict[str, Any]:
    data = {
        "name": "api",
        "kind": "web",
        "source": "image",
        "image": "nginx:1.27",
        "port": "80",
        "cpu": "0.25",
        "memory": "256Mi",
        "replicas": "2",
        "health_check_path": "/",
        "capacity": "on_demand",
    }
    data.update(overrides)
    form = ServiceForm(data, environment=env, service=service)
    assert form.is_valid(), form.errors
    return form.cleaned_data


def enqueued(callbacks) -> list[tuple[str, tuple]]:
    """What the on-commit callbacks sent: (task name, args), read from the partials."""
    # Only the task calls (partials of `Task.delay`); the live card updates are lambdas.
    return [(cb.func.__self__.name, cb.args) for cb in callbacks if hasattr(cb, "func")]


def test_it_creates_a_service_with_its_first_revision(main_env, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        service = actions.deploy_service(owner, main_env, spec(main_env))
    service.refresh_from_db()
    assert (service.name, service.image, service.replicas, service.generation) == ("api", "nginx:1.27", 2, 1)
    assert service.status == Service.Status.DEPLOYING
    assert service.status_changed_at is not None
    assert service.desired_state == Service.DesiredState.RUNNING
    assert (service.deployed_by, service.deployed_at is not None) == (owner, True)
    [revision] = service.revisions.all()
    assert (revision.number, revision.cause, revision.created_by) == (1, "deploy", owner)
    assert revision.spec == service.snapshot()
    assert enqueued(callbacks) == [("services.tasks.reconcile_service", (service.pk, 1))]
    # ...and the card, to every page open on the environment.
    assert len(callbacks) == 2


def test_it_enqueues_nothing_when_the_change_rolls_back(main_env, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            actions.deploy_service(owner, main_env, spec(main_env))
            raise RuntimeError("the request failed after the deploy")
    assert callbacks == []
    assert not Service.objects.exists()


def test_it_updates_the_spec_as_a_new_revision(main_env, owner, member, django_capture_on_commit_callbacks):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.deploy_service(member, main_env, spec(main_env, service, name="ignored", image="nginx:1.28"), service)
    service.refresh_from_db()
    assert (service.name, service.image, service.generation, service.deployed_by) == ("api", "nginx:1.28", 2, member)
    assert list(service.revisions.values_list("number", "spec__image")) == [(2, "nginx:1.28"), (1, "nginx:1.27")]
    assert enqueued(callbacks) == [("services.tasks.reconcile_service", (service.pk, 2))]


def test_it_refuses_to_update_a_service_of_another_environment(main_env, project, owner):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    other = make_environment(project, by=owner, name="qa")
    with pytest.raises(ValueError):
        actions.deploy_service(owner, other, spec(other, service), service)


def test_it_refuses_a_duplicate_name_that_slipped_past_the_form(main_env, owner):
    data = spec(main_env)
    actions.deploy_service(owner, main_env, data)
    with pytest.raises(ValidationError):
        actions.deploy_service(owner, main_env, data)


def test_it_stops_and_starts(main_env, owner, django_capture_on_commit_callbacks):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.stop_service(owner, service)
    service.refresh_from_db()
    assert (service.desired_state, service.status, service.desired_replicas) == ("stopped", "stopping", 0)
    assert enqueued(callbacks) == [("services.tasks.reconcile_service", (service.pk, 2))]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.start_service(owner, service)
    service.refresh_from_db()
    assert (service.desired_state, service.status, service.desired_replicas) == ("running", "deploying", 2)
    assert enqueued(callbacks) == [("services.tasks.reconcile_service", (service.pk, 3))]
    # Starting and stopping is not a deploy: no revision.
    assert service.revisions.count() == 1


def test_it_redeploys_the_same_spec_and_forces_a_rollout(main_env, owner, django_capture_on_commit_callbacks):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    assert service.redeployed_at is None
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.redeploy_service(owner, service)
    service.refresh_from_db()
    assert service.redeployed_at is not None
    latest, first = service.revisions.all()
    assert (latest.number, latest.cause, latest.spec) == (2, "redeploy", first.spec)
    assert enqueued(callbacks) == [("services.tasks.reconcile_service", (service.pk, 2))]


def test_it_rolls_back_to_an_earlier_revision(main_env, owner):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    actions.deploy_service(owner, main_env, spec(main_env, service, image="nginx:1.28", replicas="4"), service)
    first = service.revisions.get(number=1)
    actions.rollback_service(owner, service, first)
    service.refresh_from_db()
    assert (service.image, service.replicas, service.generation) == ("nginx:1.27", 2, 3)
    latest = service.revisions.first()
    assert (latest.number, latest.cause, latest.spec) == (3, "rollback", first.spec)


def database(env, service: Service | None = None, **overrides: Any) -> dict[str, Any]:
    return spec(env, service, **{"name": "db", "kind": "tcp", "port": "5432", "replicas": "1", "disk": "2Gi", **overrides})


def test_it_refuses_a_rollback_that_would_shrink_or_drop_a_disk(main_env, owner):
    service = actions.deploy_service(owner, main_env, database(main_env, disk=""))
    actions.deploy_service(owner, main_env, database(main_env, service, disk="1Gi"), service)
    actions.deploy_service(owner, main_env, database(main_env, service, disk="2Gi"), service)
    for number in (1, 2):
        with pytest.raises(ValidationError, match="2 GiB"):
            actions.rollback_service(owner, service, service.revisions.get(number=number))
    service.refresh_from_db()
    assert (service.disk_mib, service.generation) == (2048, 3)


def test_it_refuses_a_shrink_that_slipped_past_the_form(main_env, owner):
    service = actions.deploy_service(owner, main_env, database(main_env))
    stale = database(main_env, service, disk="3Gi")
    # The form read 2 GiB; meanwhile the disk grew to 4 GiB.
    actions.deploy_service(owner, main_env, database(main_env, service, disk="4Gi"), service)
    with pytest.raises(ValidationError, match="never shrink"):
        actions.deploy_service(owner, main_env, stale, service)
    service.refresh_from_db()
    assert service.disk_mib == 4096


def test_it_refuses_replicas_with_a_disk_that_slipped_past_the_form(main_env, owner):
    with pytest.raises(ValidationError, match="runs one replica"):
        actions.deploy_service(owner, main_env, {**database(main_env), "replicas": 2})
    assert not Service.objects.filter(name="db").exists()


def test_it_refuses_a_rollback_to_another_services_revision(main_env, owner):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    other = actions.deploy_service(owner, main_env, spec(main_env, name="other"))
    with pytest.raises(ValueError):
        actions.rollback_service(owner, service, other.revisions.get())


def test_it_marks_a_service_for_deletion_and_keeps_the_row_for_the_task(main_env, owner, django_capture_on_commit_callbacks):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        actions.delete_service(owner, service)
    service.refresh_from_db()
    assert service.status == Service.Status.DELETING
    assert enqueued(callbacks) == [("services.tasks.reconcile_service", (service.pk, 2))]
    # A service on its way out takes no more orders.
    for verb in (actions.start_service, actions.stop_service, actions.redeploy_service, actions.delete_service):
        with pytest.raises(ValidationError):
            verb(owner, service)


def test_it_starts_all_stopped_services(main_env, owner, django_capture_on_commit_callbacks):
    a = actions.deploy_service(owner, main_env, spec(main_env, name="a"))
    b = actions.deploy_service(owner, main_env, spec(main_env, name="b"))
    running = actions.deploy_service(owner, main_env, spec(main_env, name="c"))
    actions.stop_service(owner, a)
    actions.stop_service(owner, b)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert actions.start_all(owner, main_env) == 2
    # One environment task for the batch, which publishes the cards and reconciles each service.
    assert enqueued(callbacks) == [("environments.tasks.reconcile_environment", (main_env.pk, [a.pk, b.pk]))]
    assert set(Service.objects.values_list("desired_state", flat=True)) == {"running"}
    running.refresh_from_db()
    assert running.generation == 1
    assert actions.start_all(owner, main_env) == 0


def test_it_refuses_deploys_to_an_environment_being_deleted(main_env, project, owner):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    make_environment(project, by=owner, name="qa")
    delete_environment(acting_user=owner, environment=main_env)
    with pytest.raises(ValidationError):
        actions.deploy_service(owner, main_env, spec(main_env, name="new"))
    with pytest.raises(ValidationError):
        actions.start_service(owner, service)
    with pytest.raises(ValidationError):
        actions.start_all(owner, main_env)


def test_it_numbers_revisions_per_service(main_env, owner):
    a = actions.deploy_service(owner, main_env, spec(main_env, name="a"))
    b = actions.deploy_service(owner, main_env, spec(main_env, name="b"))
    actions.redeploy_service(owner, a)
    assert list(Revision.objects.filter(service=a).values_list("number", flat=True)) == [2, 1]
    assert list(Revision.objects.filter(service=b).values_list("number", flat=True)) == [1]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_serialises_concurrent_changes_to_one_service(main_env, owner, celery_queue):
    service = actions.deploy_service(owner, main_env, spec(main_env))
    errors: list[BaseException] = []

    def redeploy_five_times() -> None:
        try:
            for _ in range(5):
                actions.redeploy_service(owner, Service.objects.get(pk=service.pk))
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    # The threads commit for real: their tasks go to the test's own queue, dropped after it.
    threads = [threading.Thread(target=redeploy_five_times) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    service.refresh_from_db()
    # Every change saw the one before it: no lost generation, no duplicate revision number.
    assert service.generation == 16
    assert sorted(service.revisions.values_list("number", flat=True)) == list(range(1, 17))
