"""Small pieces the shared environment templates include: the webhook section of the Settings
tab, the previews in the selector and the "PR #n" badge."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django import template

from hooks.models import Preview

register = template.Library()


@dataclass
class SelectorSplit:
    regular: list[Any] = field(default_factory=list)
    previews: list[tuple[Any, Preview]] = field(default_factory=list)


@register.simple_tag
def split_previews(environments: list[Any]) -> SelectorSplit:
    """The selector's environments, previews apart (under their own heading). The page loads
    them with `select_related("preview")`: no query here."""
    split = SelectorSplit()
    for option in environments:
        try:
            preview = option.preview
        except Preview.DoesNotExist:
            preview = None
        if preview is not None:
            split.previews.append((option, preview))
        else:
            split.regular.append(option)
    return split


@register.inclusion_tag("hooks/_badge.html")
def preview_badge(split: SelectorSplit, environment: Any) -> dict[str, Any]:
    """The "PR #n" badge of a preview, from the selector's split (no query of its own)."""
    return {"preview": next((preview for option, preview in split.previews if option.pk == environment.pk), None)}


@register.inclusion_tag("hooks/_settings_slot.html")
def hook_settings(environment: Any) -> dict[str, Any]:
    """A slot the section loads into: the Settings tab costs no query for it."""
    return {"environment": environment}
