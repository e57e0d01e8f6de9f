"""Template helpers for builds: elapsed time and duration as a clock reads (`1:05`)."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone

register = template.Library()


def clock(seconds: int | None) -> str:
    if seconds is None:
        return "—"
    minutes, rest = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{rest:02d}" if hours else f"{minutes}:{rest:02d}"


@register.filter
def elapsed_since(moment: datetime | None) -> str:
    """How long ago `moment` was, as `m:ss`: the server's first value of the card's ticker."""
    if moment is None:
        return "0:00"
    return clock(int((timezone.now() - moment).total_seconds()))


@register.filter
def as_clock(seconds: int | None) -> str:
    return clock(seconds)
