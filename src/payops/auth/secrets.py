"""Password and API-key hashing.

Passwords use argon2id. API-key secrets are 32 random characters (about 190 bits), so a single
SHA-256 is enough to make a stolen database useless and keeps every request cheap.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# Credentials longer than these are refused before any work (no hashing, no lookup, no counter):
# a username column holds 150 characters, and no one types a password of more than 4 KiB.
MAX_USERNAME_LENGTH = 150
MAX_PASSWORD_BYTES = 4096
MIN_PASSWORD_LENGTH = 8

_hasher = PasswordHasher()  # argon2id with the library's recommended parameters
_ALPHABET = string.ascii_letters + string.digits


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    """Verified against when a username is unknown, so both paths cost one argon2 verification
    (with the parameters real hashes get). Made on first use: every `payops` process start would
    otherwise pay for it."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return (
            _hasher.verify(password_hash or _dummy_hash(), password) and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_api_key() -> tuple[str, str, str]:
    """(full key to show once, prefix, secret hash)."""
    prefix, secret = random_token(8), random_token(32)
    return f"{prefix}.{secret}", prefix, hash_api_secret(secret)


def hash_api_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def api_secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_api_secret(secret), stored_hash)
