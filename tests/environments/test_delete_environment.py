"""Deleting an environment marks it and hands the namespace to a task."""

from __future__ import annotations

import pytest

from environments.actions import delete_environment
from environments.models import Environment
from tests.factories import make_environment

pytestmark = pytest.mark.django_db


def task_calls(callbacks) -> list[tuple[str, tuple]]:
    # Only the task calls (partials of `Task.delay`); the live card updates are lambdas.
    return [(cb.func.__self__.name, cb.args) for cb in callbacks if hasattr(cb, "func")]


def test_it_marks_the_environment_and_enqueues_its_deletion(project, owner, django_capture_on_commit_callbacks):
    main = project.environments.get(name="main")
    qa = make_environment(project, by=owner, name="qa")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        remaining = delete_environment(acting_user=owner, environment=qa)
    assert remaining == project
    qa.refresh_from_db()
    assert qa.is_deleting
    main.refresh_from_db()
    assert not main.is_deleting
    assert task_calls(callbacks) == [("environments.tasks.delete_environment", (qa.pk,))]


def test_it_moves_the_default_off_an_environment_being_deleted(project, owner):
    main = project.environments.get(name="main")
    qa = make_environment(project, by=owner, name="qa")
    delete_environment(acting_user=owner, environment=main)
    project.refresh_from_db()
    assert project.default_environment == qa


def test_it_takes_the_project_along_with_its_last_environment(project, owner, django_capture_on_commit_callbacks):
    main = project.environments.get(name="main")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert delete_environment(acting_user=owner, environment=main) is None
    # The rows stay until the task has seen the namespace go.
    assert Environment.objects.get(pk=main.pk).is_deleting
    assert task_calls(callbacks) == [("environments.tasks.delete_environment", (main.pk,))]


def test_it_counts_environments_already_going_as_gone(project, owner):
    main = project.environments.get(name="main")
    qa = make_environment(project, by=owner, name="qa")
    assert delete_environment(acting_user=owner, environment=qa) == project
    assert delete_environment(acting_user=owner, environment=main) is None


def test_it_creates_the_namespace_when_an_environment_is_created(project, owner, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        qa = make_environment(project, by=owner, name="qa")
    assert task_calls(callbacks) == [("environments.tasks.reconcile_environment", (qa.pk,))]
