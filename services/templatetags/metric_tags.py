"""`{% card_metrics service as m %}`: the card's sparklines and sentences.

A page of cards has them attached in three queries (`services.metrics.attach_card_metrics`); a
card rendered alone (pushed live, an action's answer, the Log view) reads its own.
"""

from __future__ import annotations

from django import template

from services.metrics import CardMetrics, oom_sentences
from services.metrics import card_metrics as load_card_metrics
from services.models import Service

register = template.Library()


@register.simple_tag
def card_metrics(service: Service) -> CardMetrics:
    attached = getattr(service, "card_metrics", None)
    if attached is None:
        attached = load_card_metrics([service])[service.pk]
        service.card_metrics = attached
    return attached


@register.simple_tag
def oom_sentence(service: Service) -> str:
    """The Log view's out-of-memory sentence: one query, without the card's sparklines."""
    return oom_sentences([service]).get(service.pk, "")
