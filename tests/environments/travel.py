"""Factories for the environment migration, secrets, firewall and clone tests."""

from __future__ import annotations

from typing import Any

from environments.models import Environment
from services import actions
from services.forms import ServiceForm
from services.models import Service


def make_service(environment: Environment, by, **overrides: Any) -> Service:
    """A service deployed the way the deploy modal deploys it."""
    data = {
        "name": "api",
        "kind": "web",
        "source": "image",
        "image": "nginx:1.27",
        "port": "80",
        "cpu": "0.25",
        "memory": "256Mi",
        "replicas": "1",
        "health_check_path": "/",
        "capacity": "on_demand",
    }
    data.update(overrides)
    form = ServiceForm(data, environment=environment)
    assert form.is_valid(), form.errors
    return actions.deploy_service(by, environment, form.cleaned_data)


def make_shop(environment: Environment, by) -> list[Service]:
    """Three services that use most of the spec: a web app with domains and a secret, a
    database with a disk, a worker with a command."""
    return [
        make_service(
            environment,
            by,
            name="web",
            image="ghcr.io/acme/shop:v2",
            port="8080",
            env_vars='MODE=production\nDATABASE_URL=${{ secrets.DATABASE_URL }}\nGREETING="  hello  "',
            custom_domains="shop.example.com",
            replicas="2",
            cpu="0.5",
            memory="1Gi",
            health_check_path="/healthz",
        ),
        make_service(
            environment, by, name="db", kind="tcp", image="postgres:16", port="5432", disk="2Gi",
            env_vars="POSTGRES_PASSWORD=${{ secrets.DB_PASSWORD }}", capacity="spot",
        ),
        make_service(
            environment, by, name="worker", image="busybox:1.36", port="9000",
            command="sh -c", args="'echo working && sleep 3600'",
        ),
    ]


def enqueued(callbacks) -> list[tuple[str, tuple]]:
    """The tasks that on-commit callbacks would send, as (task name, args)."""
    return [(cb.func.__self__.name, cb.args) for cb in callbacks if hasattr(cb, "func")]
