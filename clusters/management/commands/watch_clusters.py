"""`manage.py watch_clusters`: keep service statuses and events in step with the clusters."""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from clusters.watcher import WatchManager


class Command(BaseCommand):
    help = "Watch every cluster that has environments; write statuses and events, push live cards."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--refresh-interval",
            type=float,
            default=30.0,
            help="Seconds between two readings of the cluster list (default 30).",
        )

    def handle(self, *args: Any, refresh_interval: float, **options: Any) -> None:
        stop = threading.Event()

        def request_stop(signum: int, frame: object) -> None:
            # A second signal while stopping falls through to the default: a forced exit.
            signal.signal(signum, signal.SIG_DFL)
            stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        self.stdout.write("Watching clusters; SIGTERM or Ctrl-C stops.")
        WatchManager(refresh_interval=refresh_interval).run(stop)
        self.stdout.write("Stopped.")
