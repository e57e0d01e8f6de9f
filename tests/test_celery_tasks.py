"""What beat sends, a worker knows: a task outside an app's `tasks` module that no one imports
would reach the worker as "unregistered" and be dropped, every period."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[1]


def test_it_registers_every_task_beat_sends_in_a_fresh_worker_process():
    # A process of its own, as a worker starts: nothing the test session imported counts.
    script = (
        "import django, os; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'ale_site.settings'); django.setup()\n"
        "from ale_site.celery import app\n"
        "app.loader.import_default_modules()\n"
        "print('\\n'.join(sorted(app.tasks)))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    registered = set(result.stdout.split())
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert scheduled - registered == set(), f"beat sends tasks no worker registers: {sorted(scheduled - registered)}"
