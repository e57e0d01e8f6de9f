from __future__ import annotations

from django.apps import AppConfig


class ServicesConfig(AppConfig):
    name = "services"

    def ready(self) -> None:
        # Inside ready(): these modules import models, which apps.py may not at import time.
        from clusters.watcher import register_writer
        from services.observed import write_changes

        # The watcher (clusters/) is the transport and imports no app: it stores what it sees
        # through the writer named here.
        register_writer(write_changes)
