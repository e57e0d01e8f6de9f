"""Encryption at rest of environment variables: Fernet tokens under the keys of settings.

`settings.ALE_SECRET_KEYS` lists keys newest first: the first encrypts, every key decrypts, so
a key is rotated by prepending a new one, running `manage.py rotate_secrets`, then dropping the
old one. Errors never carry a value or a token: they end up in logs and on pages.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class SecretDecryptionError(Exception):
    """A stored value no configured key opens (a key was dropped before rotating)."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("ALE_SECRET_KEYS is empty.")
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except ValueError:
        # The message of cryptography's error is about the format; the key itself stays out.
        raise ImproperlyConfigured(
            "ALE_SECRET_KEYS holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None


def fernet() -> MultiFernet:
    # Keyed on the tuple of keys, so that tests overriding the setting get their own instance.
    return _fernet(tuple(settings.ALE_SECRET_KEYS))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError("A stored value cannot be decrypted with the configured keys.") from None


def rotate(token: str) -> str:
    """The token re-encrypted with the first key (MultiFernet.rotate keeps the timestamp)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError("A stored value cannot be decrypted with the configured keys.") from None


def is_current(token: str) -> bool:
    """Whether the first (encrypting) key opens the token: rotation skips those rows."""
    try:
        Fernet(settings.ALE_SECRET_KEYS[0].encode()).decrypt(token.encode())
    except InvalidToken:
        return False
    return True
