"""`{% service_url "stop" service %}`: a service's URL without a full `reverse()` per card.

A page of service cards has ten links per card; `reverse()` costs most of a
card's time. Each URL name is reversed once, with a placeholder id, and the service's public id
is put in its place. A name that does not exist (yet) gives "", as `{% url ... as var %}` does,
so a card can offer a link only once its page exists.
"""

from __future__ import annotations

from functools import lru_cache

from django import template
from django.test.signals import setting_changed
from django.dispatch import receiver
from django.urls import NoReverseMatch, get_script_prefix, get_urlconf, reverse

from services.models import Service

register = template.Library()

# Public ids are lowercase letters and digits: this cannot occur in one.
_PLACEHOLDER = "SERVICE-ID-PLACEHOLDER"


@lru_cache(maxsize=256)
def _pattern(name: str, urlconf: str | None, script_prefix: str) -> str:
    try:
        return reverse(f"services:{name}", args=[_PLACEHOLDER], urlconf=urlconf)
    except NoReverseMatch:
        return ""


@register.simple_tag
def service_url(name: str, service: Service) -> str:
    pattern = _pattern(name, get_urlconf(), get_script_prefix())
    return pattern.replace(_PLACEHOLDER, service.public_id) if pattern else ""


@receiver(setting_changed)
def _forget_patterns(*, setting: str, **kwargs: object) -> None:
    # Tests that swap the URLconf must not get URLs reversed from the old one.
    if setting == "ROOT_URLCONF":
        _pattern.cache_clear()

