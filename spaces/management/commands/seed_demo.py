"""Make sure the demo account, its space and its project exist; print how to sign in.

Idempotent: `make run` calls it on every start. The password is generated on the first run and
kept in `var/demo-login.txt`, so a browser's saved login keeps working across restarts.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clusters.models import Cluster
from spaces.actions import create_project, ensure_default_space

USERNAME = "demo"
PROJECT = "demo"
PROJECT_DISPLAY_NAME = "Demo project"


def _password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-login.txt"


def _demo_password() -> str:
    path = _password_file()
    if path.exists():
        password = path.read_text().strip()
        if password:
            return password
    password = secrets.token_urlsafe(12)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


class Command(BaseCommand):
    help = "Create (once) the demo account, its default space and a demo project; print the login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Where the dashboard is served.")

    def handle(self, *args: Any, **options: Any) -> None:
        password = _demo_password()
        with transaction.atomic():
            User = get_user_model()
            user, created = User.objects.get_or_create(username=USERNAME, defaults={"email": "demo@localhost"})
            if created or not user.check_password(password):
                user.set_password(password)
                user.save()
            space = ensure_default_space(user)
            if not space.projects.filter(name=PROJECT).exists():
                cluster = Cluster.default()
                if cluster is None:
                    raise CommandError("No cluster is registered; run the migrations first (they add `local`).")
                create_project(
                    acting_user=user, space=space, name=PROJECT, display_name=PROJECT_DISPLAY_NAME, cluster=cluster
                )
        self.stdout.write(f"Sign in at {options['url']} as {USERNAME} / {password}")
