"""The Celery app: every cluster operation runs as a task of this app."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ale_site.settings")

app = Celery("ale")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
