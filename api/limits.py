"""Per-token rate limit: a fixed window counter in Redis, shared by every web process."""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

_client: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _client


def forget_client() -> None:
    """Drop the cached connection: the next count connects to `settings.REDIS_URL` as it is then."""
    global _client
    _client = None


def hit(token_id: str) -> int | None:
    """Count one request of a token (by public id: database ids repeat across test databases); None when within the limit, else the seconds until the window ends."""
    window = settings.API_RATE_WINDOW_SECONDS
    now = time.time()
    start = int(now // window) * window
    key = f"ale:api:rate:{token_id}:{start}"
    pipe = _redis().pipeline()
    pipe.incr(key)
    pipe.expire(key, window + 5)
    try:
        count, _ = pipe.execute()
    except redis.RedisError as error:
        # Open, not closed: a broker outage must not stop a CI deploy; the actions' own rules
        # and the database still hold.
        logger.warning("API rate limit not counted (Redis: %s)", error)
        return None
    if count > settings.API_RATE_LIMIT:
        return max(1, int(start + window - now + 0.999))
    return None
