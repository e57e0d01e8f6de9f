"""Re-encrypt every environment variable with the newest key of ALE_SECRET_KEYS.

Rotation: prepend a new key to ALE_SECRET_KEYS, restart ale, run this command, then remove the
old key. Rows already under the newest key are skipped, so running it again is cheap and safe.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from environments.models import EnvironmentVariable
from environments.secrets import SecretDecryptionError, is_current, rotate

BATCH = 500


class Command(BaseCommand):
    help = "Re-encrypt every environment variable and secret with the first key of ALE_SECRET_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        rotated = skipped = 0
        failed: list[int] = []
        last_pk = 0
        while True:
            with transaction.atomic():
                rows = list(
                    EnvironmentVariable.objects.select_for_update()
                    .filter(pk__gt=last_pk)
                    .order_by("pk")
                    .only("pk", "value_encrypted")[:BATCH]
                )
                if not rows:
                    break
                changed = []
                for row in rows:
                    last_pk = row.pk
                    if is_current(row.value_encrypted):
                        skipped += 1
                        continue
                    try:
                        row.value_encrypted = rotate(row.value_encrypted)
                    except SecretDecryptionError:
                        # The row id only: the value and the token stay out of the output.
                        failed.append(row.pk)
                        continue
                    changed.append(row)
                EnvironmentVariable.objects.bulk_update(changed, ["value_encrypted"])
                rotated += len(changed)
        self.stdout.write(f"{rotated} re-encrypted, {skipped} already under the newest key.")
        if failed:
            raise CommandError(
                f"{len(failed)} value(s) open with none of the configured keys (ids {', '.join(map(str, failed[:20]))}): "
                "put back the key they were encrypted with, then run this again."
            )
