"""Who is calling: Basic users (argon2id) and API keys (hashed), with a failure throttle."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payops.auth import repository
from payops.auth.permissions import ALL_PERMISSIONS, API_KEY_PERMISSIONS
from payops.auth.secrets import api_secret_matches, verify_password
from payops.domain import messages
from payops.errors import AuthenticationFailed, Throttled


@dataclass(frozen=True)
class Principal:
    kind: str  # "user" | "api_key" | "cli"
    name: str
    permissions: frozenset[str]
    initiator: dict[str, Any] = field(default_factory=dict)

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def audit_actor(self) -> str:
        return self.name


# The actor of what PayOps records on its own: settling an operation with the gateway's answer.
SETTLEMENT = Principal("system", "settlement", frozenset())


class FailureThrottle:
    """Counts failed logins per username and per client address over a sliding window."""

    def __init__(self, limit: int, window: float) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        entries = self._failures.setdefault(key, deque())
        while entries and entries[0] <= now - self.window:
            entries.popleft()
        return entries

    def check(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            entries = self._recent(key, now)
            if len(entries) >= self.limit:
                raise Throttled(int(entries[0] + self.window - now) + 1)

    def forgive(self, *keys: str) -> None:
        """Take back the failure counted in advance for an attempt that succeeded."""
        for key in keys:
            entries = self._failures.get(key)
            if entries:
                entries.pop()

    def fail(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._failures) > 100_000:  # bound memory under a credential-stuffing flood
            self._failures.clear()


class Authenticator:
    def __init__(self, *, cache_seconds: float, failure_limit: int, failure_window: float) -> None:
        self.cache_seconds = cache_seconds
        self.throttle = FailureThrottle(failure_limit, failure_window)
        self._cache_key = secrets.token_bytes(32)
        self._verified: dict[bytes, tuple[int, float]] = {}

    def _fingerprint(self, credential: str) -> bytes:
        return hmac.new(self._cache_key, credential.encode(), hashlib.sha256).digest()

    async def authenticate(
        self, session: AsyncSession, authorization: str | None, client: str
    ) -> Principal:
        if not authorization:
            raise AuthenticationFailed(messages.AUTH_MISSING)
        scheme, _, credential = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return await self._basic(session, credential.strip(), client)
        if scheme == "api-key":
            return await self._api_key(session, credential.strip(), client)
        raise AuthenticationFailed(messages.AUTH_MISSING)

    async def _basic(self, session: AsyncSession, credential: str, client: str) -> Principal:
        if not credential:
            raise AuthenticationFailed(messages.AUTH_BASIC_NO_CREDENTIALS)
        if " " in credential:
            raise AuthenticationFailed(messages.AUTH_BASIC_SPACES)
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC_HEADER) from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC_HEADER)
        keys = (f"user:{username}", f"client:{client}")
        fingerprint = self._fingerprint(decoded)
        cached = self._verified.get(fingerprint)
        user = None
        if cached and cached[1] > time.monotonic():
            user = await repository.user_by_id(session, cached[0])
        if user is None:
            self.throttle.check(*keys)
            # Count the attempt as failed before the (slow, awaited) check, so parallel guesses
            # cannot all pass the limit; a success takes it back.
            self.throttle.fail(*keys)
            user = await repository.user_by_username(session, username)
            ok = await asyncio.to_thread(
                verify_password, user.password_hash if user else None, password
            )
            if not ok or user is None:
                raise AuthenticationFailed(messages.AUTH_INVALID_BASIC)
            self.throttle.forgive(*keys)
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[fingerprint] = (user.id, time.monotonic() + self.cache_seconds)
        if not user.is_active:
            raise AuthenticationFailed(messages.AUTH_INACTIVE)
        permissions = ALL_PERMISSIONS if user.is_superuser else frozenset(
            p.code for p in user.permissions
        )
        initiator = {
            "id": user.id, "first_name": user.first_name, "last_name": user.last_name,
            "username": user.username, "email": user.email, "phone": user.phone,
        }
        return Principal("user", user.username, permissions, initiator)

    async def _api_key(self, session: AsyncSession, credential: str, client: str) -> Principal:
        keys = (f"client:{client}",)
        self.throttle.check(*keys)
        prefix, sep, secret = credential.partition(".")
        key = await repository.api_key_by_prefix(session, prefix) if sep and secret else None
        now = datetime.now(timezone.utc)
        if (
            key is None
            or not api_secret_matches(secret, key.secret_hash)
            or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)
        ):
            self.throttle.fail(*keys)
            raise AuthenticationFailed(messages.AUTH_INVALID_KEY)
        return Principal("api_key", f"api_key:{key.prefix}", API_KEY_PERMISSIONS, {})
