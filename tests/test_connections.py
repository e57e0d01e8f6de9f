"""A long-running process (a Celery worker, the watcher) keeps its database connection from one
task or write to the next; the web server's are not kept (`DATABASE_CONN_MAX_AGE`, 0)."""

from __future__ import annotations

import threading

import pytest
from django.db import close_old_connections, connection

from ale_site.connections import connections_kept

# Threads read the database: what the test writes must be committed (seeded rows kept, as elsewhere).
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def two_writes_on_a_thread() -> list[object]:
    """The connections two writes used, on a thread of their own, as the watcher's writer runs
    them: each after `close_old_connections()`."""
    used: list[object] = []

    def run() -> None:
        try:
            for _ in range(2):
                close_old_connections()
                with connection.cursor() as cursor:
                    cursor.execute("SELECT 1")
                used.append(connection.connection)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the writes did not finish"
    return used


def test_a_long_running_process_keeps_its_connection_from_one_write_to_the_next():
    with connections_kept():
        first, second = two_writes_on_a_thread()

    assert second is first


def test_outside_one_each_write_opens_a_connection_and_the_setting_is_back():
    first, second = two_writes_on_a_thread()

    assert second is not first
    assert connection.settings_dict["CONN_MAX_AGE"] == 0
