from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_save


class ServicesConfig(AppConfig):
    name = "services"

    def ready(self) -> None:
        # Inside ready(): these modules import models, which apps.py may not at import time.
        from clusters.watcher import register_writer
        from services.models import TerminalSession
        from services.observed import write_changes
        from spaces.audit import record_terminal_session

        # The watcher (clusters/) is the transport and imports no app: it stores what it sees
        # through the writer named here.
        register_writer(write_changes)
        # A terminal opened or closed goes to the space's audit log (spaces/ does not import
        # services: the hook is connected from this side).
        post_save.connect(record_terminal_session, sender=TerminalSession, dispatch_uid="spaces.audit.terminal")
