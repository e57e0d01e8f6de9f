from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from api import problems
from spaces import audit

API_PREFIX = "/api/"


class ApiRequestMiddleware:
    """What django-ninja leaves to the site: refuse a NUL in the path, forget the API token's name once its request
    is answered (so the next request served by the thread records no token it did not use), and
    answer a wrong method as problem+json like every other API error (ninja's is plain text)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith(API_PREFIX) and "\x00" in request.path:
            # No id holds a NUL, and PostgreSQL refuses one in a query (a 500): not found.
            return problems.response(404, "Not found.")
        marker = audit.acting_token_name.set("")
        try:
            response = self.get_response(request)
        finally:
            audit.acting_token_name.reset(marker)
        if response.status_code == 405 and request.path.startswith(API_PREFIX):
            allowed = response.get("Allow", "")
            response = problems.response(405, f"{request.method} is not allowed here; use {allowed}.", headers={"Allow": allowed})
        return response
