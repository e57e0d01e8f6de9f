"""Public identifiers: what URLs, HTML and the cluster see instead of database integers."""

from __future__ import annotations

import secrets
import string

ALPHABET = string.ascii_lowercase + string.digits
LENGTH = 12


def new_public_id() -> str:
    """Return 12 random lowercase letters and digits (about 62 bits).

    Lowercase only, because the id becomes part of Kubernetes names (`ale-<id>`), which must be
    DNS labels.
    """
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))
