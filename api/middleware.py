from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from spaces import audit


class ApiTokenAuditMiddleware:
    """Forget the API token's name once its request is answered, so that the next request
    served by the same thread records no token it did not use."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        marker = audit.acting_token_name.set("")
        try:
            return self.get_response(request)
        finally:
            audit.acting_token_name.reset(marker)
