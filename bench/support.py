"""What every benchmark that renders pages starts with: Django configured as in production
(DEBUG off, cached templates), on a scratch SQLite database unless the configured one is asked
for, with the migrations applied."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def setup_django(*, use_configured_db: bool) -> None:
    if not use_configured_db:
        scratch = Path(tempfile.mkdtemp(prefix="ale-bench-"))
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
        os.environ["ALE_VAR_DIR"] = str(scratch)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ale_site.settings")
    # Production-like rendering: cached templates, no debug toolbar of any kind.
    os.environ["DEBUG"] = "false"
    os.environ.setdefault("SECRET_KEY", "bench-only-not-a-secret")
    # A fixed Fernet key for the throwaway rows (nothing secret is stored by the bench).
    os.environ.setdefault("ALE_SECRET_KEYS", "YmVuY2gtb25seS1ub3QtYS1zZWNyZXQtMDAwMDAwMDA=")

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = ["*"]
    # No collectstatic here: plain static URLs cost what hashed ones cost once cached.
    settings.STORAGES = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if not use_configured_db:
        call_command("migrate", verbosity=0, interactive=False)
