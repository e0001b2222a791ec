"""Encryption at rest for gateway credentials, webhook secrets and the merchant HMAC key
(Fernet, decisions §7).

``PAYOPS_SECRET_KEY`` (or the generated ``<data dir>/secret.key``) may hold several Fernet keys
separated by commas: the first encrypts, every one decrypts (``MultiFernet``). That is how the key
is rotated: put the new key first, run ``payops secret rotate`` to re-encrypt every stored secret
under it, then drop the old key.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from payops.config import Settings

KEY_FILE = "secret.key"
# Marks an encrypted text value in a key/value table, where rows written by older versions are
# still plaintext (they are encrypted at the next start; see payops.stored_secrets).
TEXT_PREFIX = "fernet:"


class SecretKeyMismatch(RuntimeError):
    """A stored secret does not decrypt with any configured key."""


def load_or_create_key(settings: Settings) -> bytes:
    """The configured key(s), or one generated once into the data dir (mode 0600)."""
    if settings.secret_key:
        return settings.secret_key.strip().encode()
    path: Path = settings.data_dir / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    settings.ensure_data_dir()
    key = Fernet.generate_key()
    # Written whole to a private temporary file, then linked into place: processes starting
    # together never see a half-written key, and exactly one key wins.
    temporary = path.with_name(f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(key)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return path.read_bytes().strip()
    finally:
        temporary.unlink(missing_ok=True)
    return key


def split_keys(raw: bytes) -> list[bytes]:
    keys = [part.strip() for part in raw.split(b",") if part.strip()]
    if not keys:
        raise ValueError("no Fernet key configured")
    return keys


_BOXES: dict[tuple[str, str], SecretBox] = {}


def box_for(settings: Settings) -> SecretBox:
    """The process's ``SecretBox`` for these settings' key: the key is read (from
    ``PAYOPS_SECRET_KEY`` or the key file) the first time only, not on every gateway call. A
    key change takes a restart, as rotation already does (docs/security.md)."""
    fingerprint = (
        hashlib.sha256(str(settings.secret_key).encode()).hexdigest(),
        str(Path(settings.data_dir).resolve()),
    )
    box = _BOXES.get(fingerprint)
    if box is None:
        box = _BOXES[fingerprint] = SecretBox(load_or_create_key(settings))
    return box


class SecretBox:
    def __init__(self, key: bytes) -> None:
        keys = split_keys(key)
        self.key_count = len(keys)
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretKeyMismatch(
                "gateway credentials cannot be decrypted with this secret key"
            ) from exc

    def seal_text(self, value: str) -> str:
        return TEXT_PREFIX + self._fernet.encrypt(value.encode()).decode()

    def open_text(self, stored: str) -> str:
        """A text value as stored: encrypted (prefixed) or, from older versions, plaintext."""
        if not stored.startswith(TEXT_PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(TEXT_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyMismatch(
                "a stored secret cannot be decrypted with this secret key"
            ) from exc

    def rotate(self, token: str) -> str:
        """The token re-encrypted under the first key (no-op text for an empty token)."""
        if not token:
            return token
        if token.startswith(TEXT_PREFIX):
            return TEXT_PREFIX + self._rotate(token[len(TEXT_PREFIX) :])
        return self._rotate(token)

    def _rotate(self, token: str) -> str:
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyMismatch(
                "a stored secret cannot be decrypted with this secret key"
            ) from exc

    @staticmethod
    def is_sealed_text(stored: str) -> bool:
        return stored.startswith(TEXT_PREFIX)
