from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import authenticate
from django.core.management import call_command

from spaces.models import Project


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def _seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_it_creates_the_demo_account_space_and_project(db, var_dir):
    output = _seed()
    password = (var_dir / "demo-login.txt").read_text().strip()
    assert output == f"Sign in at http://127.0.0.1:8000/ as demo / {password}\n"
    user = authenticate(username="demo", password=password)
    assert user is not None
    project = Project.objects.get(space__owner=user, space__is_default=True, name="demo")
    assert project.display_name == "Demo project"
    assert [env.name for env in project.environments.all()] == ["main"]


def test_it_is_idempotent_and_keeps_the_password(db, var_dir):
    first = _seed()
    second = _seed("--url", "http://localhost:9000/")
    password = (var_dir / "demo-login.txt").read_text().strip()
    assert first.split(" / ")[1] == second.split(" / ")[1] == f"{password}\n"
    assert second.startswith("Sign in at http://localhost:9000/ as demo / ")
    assert Project.objects.filter(name="demo").count() == 1


def test_it_restores_the_stored_password_when_it_was_changed(db, var_dir, django_user_model):
    _seed()
    user = django_user_model.objects.get(username="demo")
    user.set_password("changed elsewhere")
    user.save()
    _seed()
    password = (var_dir / "demo-login.txt").read_text().strip()
    assert authenticate(username="demo", password=password) is not None
