"""Request typing and the htmx checks shared by the views of every app."""

from __future__ import annotations

from django.http import HttpRequest
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def wants_fragment(request: HtmxHttpRequest) -> bool:
    """True when htmx asks for a piece of a page rather than a whole one.

    Boosted links and history restores (a back button after the cache is gone) replace the
    whole body, so they get the full page.
    """
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request
