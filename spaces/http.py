"""Request typing, the htmx checks and the answer to a form too large to read, shared by the
views of every app."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import filesizeformat
from django_htmx.middleware import HtmxDetails

ViewFunc = TypeVar("ViewFunc", bound=Callable[..., Any])


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def wants_fragment(request: HtmxHttpRequest) -> bool:
    """True when htmx asks for a piece of a page rather than a whole one.

    Boosted links and history restores (a back button after the cache is gone) replace the
    whole body, so they get the full page.
    """
    htmx = request.htmx
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


# --- requests over the size Django reads ---------------------------------------------------------

TOO_BIG_ATTRIBUTE = "request_too_big_message"


def too_big_message(message: str) -> Callable[[ViewFunc], ViewFunc]:
    """Names the limit a view's users meet when its form is larger than Django reads
    (`DATA_UPLOAD_MAX_MEMORY_SIZE`), in the words the view uses for its own limit."""

    def decorate(view: ViewFunc) -> ViewFunc:
        setattr(view, TOO_BIG_ATTRIBUTE, message)
        return view

    return decorate


class RequestTooBigMiddleware:
    """Answers a form larger than Django reads with 413 and a sentence, not a blank 400.

    Django raises `RequestDataTooBig` where the body is first parsed, which is the CSRF check,
    before any view runs: the page would show nothing. Parsing it here first, one step earlier
    (this stands before CsrfViewMiddleware), lets the answer name the limit. The body is plain
    text, which the page's htmx error handler (static/js/errors.js) shows as it is.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        # A view exempt from CSRF reads its body its own way (raw, say): Django parses nothing
        # for it, and neither does this.
        if request.method != "POST" or getattr(view_func, "csrf_exempt", False):
            return None
        try:
            request.POST  # noqa: B018 - parsed for its side effect: the size check
        except RequestDataTooBig:
            limit = filesizeformat(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
            message = getattr(view_func, TOO_BIG_ATTRIBUTE, None) or (
                f"This form is larger than {limit}, the most ale accepts at once. Send less, or in parts."
            )
            return HttpResponse(message, status=413, content_type="text/plain; charset=utf-8")
        return None
