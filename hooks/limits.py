"""A per-hook rate limit in Redis: a counter per minute, shared by every web process."""

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
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1, socket_connect_timeout=1)
    return _client


def allow(hook_id: str) -> bool:
    """Whether one more delivery to this hook URL fits this minute's budget."""
    key = f"ale:hook-rate:{hook_id[:40]}:{int(time.time() // 60)}"
    try:
        pipe = _redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, 120)
        count, _ = pipe.execute()
    except redis.RedisError:
        # The broker is Redis too: without it no delivery would be processed anyway, and the
        # signature check still guards the door.
        logger.warning("hook rate limit: Redis unavailable, not counted")
        return True
    return int(count) <= settings.WEBHOOK_RATE_PER_MINUTE
