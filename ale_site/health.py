"""`/healthz` and `/readyz`: what Kubernetes' probes and load balancers ask.

- `/healthz` says the process answers HTTP. It touches neither the database nor Redis: a
  liveness probe that failed whenever PostgreSQL was down would restart every web pod during a
  database outage, which helps nothing and makes the recovery slower.
- `/readyz` says this pod can serve pages: the database answers a `SELECT 1` and Redis (the
  Channels layer and the Celery broker) answers a PING, each within a short timeout. A failure
  is a 503 naming what failed, so `kubectl describe pod` shows the reason.

`HealthCheckMiddleware` answers both paths before any other middleware. The kubelet sends the
pod's IP as the Host header, which `ALLOWED_HOSTS` does not (and should not) list, and with
`SECURE_SSL_REDIRECT` the plain-HTTP probe would get a redirect to HTTPS; answering first,
without ever reading the Host header, keeps the probes independent of both. The URL routes
exist too, so the views can be reversed and reached the ordinary way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

HEALTH_PATHS = frozenset({"/healthz", "/readyz"})
# Well under the probes' timeoutSeconds, so a slow dependency reads as "not ready", not as a
# probe timeout with no reason attached.
CHECK_TIMEOUT_SECONDS = 2.0


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "no-store"
    return response


def healthz(request: HttpRequest) -> HttpResponse:
    return _no_store(JsonResponse({"status": "ok"}))


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def check_redis() -> None:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()


CHECKS: dict[str, Callable[[], None]] = {"database": check_database, "redis": check_redis}


def readyz(request: HttpRequest) -> HttpResponse:
    failed: dict[str, str] = {}
    for name, check in CHECKS.items():
        try:
            check()
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", reported by name
            logger.warning("readiness: %s unavailable: %s", name, exc)
            failed[name] = type(exc).__name__
    if failed:
        # Not the exception's text: it can carry a host name or a user name from the URL.
        return _no_store(JsonResponse({"status": "unavailable", "failed": failed}, status=503))
    return _no_store(JsonResponse({"status": "ok"}))


_VIEWS: dict[str, Callable[[HttpRequest], HttpResponse]] = {"/healthz": healthz, "/readyz": readyz}


class HealthCheckMiddleware:
    """Answers GET/HEAD of the health paths before Host validation and the HTTPS redirect."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info.rstrip("/") or "/"
        if path in HEALTH_PATHS and request.method in ("GET", "HEAD"):
            return _VIEWS[path](request)
        return self.get_response(request)
