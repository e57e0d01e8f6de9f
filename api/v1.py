"""/api/v1/: the NinjaAPI, its token authentication and its errors; the routers are per area.

Every operation: the token (here) → the app's access helper → the app's action → a schema.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, RequestDataTooBig, ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.security.base import AuthBase

from api import limits, problems, routes_environments, routes_services, routes_spaces
from api.access import Unauthenticated, authenticate
from api.actions import mark_used
from api.models import ApiToken
from spaces import audit


class TokenAuth(AuthBase):
    """`Authorization: Bearer ale_…`; sets the audit log's token name for the request."""

    openapi_type = "http"
    openapi_scheme = "bearer"

    def __init__(self) -> None:
        self.openapi_bearerFormat = "ale_…"
        super().__init__()

    def __call__(self, request: HttpRequest) -> ApiToken:
        token = authenticate(request.headers.get("Authorization", ""))
        retry_after = limits.hit(token.public_id)
        if retry_after is not None:
            raise problems.Problem(
                429, f"This token made too many requests: try again in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
        mark_used(token)
        # Reset by api.middleware after the response.
        audit.acting_token_name.set(token.name)
        return token


api = NinjaAPI(
    title="ale API",
    version="1",
    description="Drive ale from outside the browser. Authenticate with `Authorization: Bearer ale_…` "
    "(a token from the user menu's API tokens, or a service's deploy key).",
    auth=TokenAuth(),
    urls_namespace="api-v1",
)


def _ninja_validation(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = []
    for error in exc.errors:
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "payload", "query", "path")]
        errors.append({"field": ".".join(location) or None, "code": error.get("type", "invalid"), "message": error.get("msg", "")})
    first = errors[0] if errors else {"field": None, "message": "Invalid input."}
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    return problems.response(422, detail, errors=errors)


@api.exception_handler(problems.Problem)
def _problem(request: HttpRequest, exc: problems.Problem) -> HttpResponse:
    return problems.response(exc.status, exc.detail, errors=exc.errors, headers=exc.headers)


@api.exception_handler(Unauthenticated)
def _unauthenticated(request: HttpRequest, exc: Unauthenticated) -> HttpResponse:
    return problems.response(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="ale"'})


@api.exception_handler(AuthenticationError)
def _no_auth(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return problems.response(401, "Send a token as 'Authorization: Bearer ale_…'.", headers={"WWW-Authenticate": 'Bearer realm="ale"'})


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    # The same answer for missing and not yours.
    return problems.response(404, "Not found.")


@api.exception_handler(PermissionDenied)
def _forbidden(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return problems.response(403, str(exc) or "Not allowed.")


@api.exception_handler(ValidationError)
def _refused(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problem = problems.from_validation_error(exc)
    return problems.response(problem.status, problem.detail, errors=problem.errors)


@api.exception_handler(NinjaValidationError)
def _invalid(request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    return _ninja_validation(request, exc)


@api.exception_handler(RequestDataTooBig)
def _too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    return problems.response(413, "The request body is larger than this server accepts.")


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return problems.response(exc.status_code, str(exc))


api.add_router("", routes_spaces.router)
api.add_router("", routes_environments.router)
api.add_router("", routes_services.router)
