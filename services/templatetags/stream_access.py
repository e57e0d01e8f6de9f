"""`{% space_owner environment as is_owner %}`: whether the current user owns the environment's
space, for the Settings tab's terminal access control (only owners may change it)."""

from __future__ import annotations

from typing import Any

from django import template

from environments.models import Environment
from spaces.access import is_owner

register = template.Library()


@register.simple_tag(takes_context=True)
def space_owner(context: dict[str, Any], environment: Environment) -> bool:
    request = context.get("request")
    return request is not None and is_owner(request.user, environment.project.space)
