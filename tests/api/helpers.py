from __future__ import annotations

from typing import Any

from api.actions import create_deploy_key, create_token
from services import actions as service_actions
from services.forms import ServiceForm


def make_token(user, *, permission: str = "deploy", spaces=None, name: str = "ci", **kwargs: Any) -> str:
    _, raw = create_token(user, name=name, permission=permission, spaces=spaces, **kwargs)
    return raw


def make_deploy_key(user, service, *, name: str = "ci key") -> str:
    _, raw = create_deploy_key(user, service, name=name)
    return raw


def auth(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def make_service(env, by, **overrides: Any):
    data = {"name": "web", "kind": "web", "source": "image", "image": "nginx:1.27", "port": "80", "cpu": "0.1",
            "memory": "64Mi", "replicas": "1", "capacity": "on_demand", **overrides}
    form = ServiceForm(data, environment=env)
    assert form.is_valid(), form.errors
    return service_actions.deploy_service(by, env, form.cleaned_data)
