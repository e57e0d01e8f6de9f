"""How long ago something happened, as people say it: "just now", then "5 minutes ago"."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()

# Below this, `timesince` says "0 minutes": a card deployed seconds ago said "0 minutes ago".
JUST_NOW_SECONDS = 60


@register.filter
def ago(moment: datetime | None) -> str:
    if moment is None:
        return ""
    if (timezone.now() - moment).total_seconds() < JUST_NOW_SECONDS:
        return "just now"
    return f"{timesince(moment)} ago"
