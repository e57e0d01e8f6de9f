from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_save


class SpacesConfig(AppConfig):
    name = "spaces"

    def ready(self) -> None:
        from services.models import TerminalSession
        from spaces.audit import record_terminal_session

        post_save.connect(record_terminal_session, sender=TerminalSession, dispatch_uid="spaces.audit.terminal")
