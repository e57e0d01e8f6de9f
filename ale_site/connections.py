"""The database connections of ale's long-running processes: a Celery worker and the watcher
keep theirs from one task, or one write, to the next instead of opening one each time.

Each is kept `settings.BACKGROUND_DATABASE_CONN_MAX_AGE` seconds and checked before it is used
again (Django's `CONN_HEALTH_CHECKS`): the process calls `close_old_connections()` before each
task or write, as Django does before each request, which closes one that failed or aged out;
the one kept is checked at its first query, so a database restarted since is noticed there.
The web server's connections stay `DATABASE_CONN_MAX_AGE`'s (0: under ASGI they are not reused).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

KEPT = ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS")


def keep_connections() -> dict[str, dict[str, Any]]:
    """From now on in this process; returns what it replaced, for `restore`."""
    from django.conf import settings
    from django.db import connections

    previous = {}
    for alias in connections:
        database = connections.settings[alias]
        previous[alias] = {name: database.get(name) for name in KEPT}
        database["CONN_MAX_AGE"] = settings.BACKGROUND_DATABASE_CONN_MAX_AGE
        database["CONN_HEALTH_CHECKS"] = True
    return previous


def restore(previous: dict[str, dict[str, Any]]) -> None:
    from django.db import connections

    for alias, values in previous.items():
        connections.settings[alias].update(values)


@contextmanager
def connections_kept() -> Iterator[None]:
    """`keep_connections` while the block runs (a command run in another program's process,
    such as a test's, leaves that process as it found it)."""
    previous = keep_connections()
    try:
        yield
    finally:
        restore(previous)
