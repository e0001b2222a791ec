"""Encryption at rest for gateway credentials and webhook secrets (Fernet, decisions §7)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from payops.config import Settings

KEY_FILE = "secret.key"


def load_or_create_key(settings: Settings) -> bytes:
    """The configured key, or one generated once into the data dir (mode 0600)."""
    if settings.secret_key:
        return settings.secret_key.encode()
    path: Path = settings.data_dir / KEY_FILE
    if path.exists():
        return path.read_bytes().strip()
    settings.ensure_data_dir()
    key = Fernet.generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    return key


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, data: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(data, sort_keys=True).encode()).decode()

    def open(self, token: str) -> dict[str, Any]:
        if not token:
            return {}
        try:
            return json.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise RuntimeError("gateway credentials cannot be decrypted with this secret key") from exc
