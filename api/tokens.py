"""The format of an API token, pure: no database, no settings.

`ale_` + 30 base62 characters of secret (about 178 bits) + 6 base62 characters of CRC32 of the
secret, as GitHub's tokens do: a secret scanner recognises the prefix, and a token with a typo
fails its checksum here, before any database lookup. Only `hash_token(token)` is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
import zlib

PREFIX = "ale_"
BASE62 = string.digits + string.ascii_letters
SECRET_LENGTH = 30
CHECKSUM_LENGTH = 6
TOKEN_LENGTH = len(PREFIX) + SECRET_LENGTH + CHECKSUM_LENGTH


def _base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, rest = divmod(number, 62)
        digits.append(BASE62[rest])
    return "".join(reversed(digits)).rjust(width, "0")


def checksum(secret: str) -> str:
    return _base62(zlib.crc32(secret.encode()), CHECKSUM_LENGTH)


def new_token() -> str:
    secret = "".join(secrets.choice(BASE62) for _ in range(SECRET_LENGTH))
    return f"{PREFIX}{secret}{checksum(secret)}"


def is_well_formed(token: str) -> bool:
    """The prefix, the length, the alphabet and the checksum: what a typo breaks."""
    if len(token) != TOKEN_LENGTH or not token.startswith(PREFIX):
        return False
    body = token[len(PREFIX) :]
    if any(ch not in BASE62 for ch in body):
        return False
    secret, check = body[:SECRET_LENGTH], body[SECRET_LENGTH:]
    return hmac.compare_digest(checksum(secret), check)


def hash_token(token: str) -> str:
    """SHA-256 of the whole token: the secret has enough entropy that no salt or stretching is
    needed, and a fast hash lets every request be checked by one indexed lookup."""
    return hashlib.sha256(token.encode()).hexdigest()
