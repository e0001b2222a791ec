"""Who is calling: Basic users (argon2id) and API keys (hashed).

The order of work for each request is what keeps the perimeter standing under attack
(docs/security.md): over-long credentials are refused unread; an API key or a password this
process has already verified (for the user's current ``credentials_version``) is served without
touching the throttle; only then is a failure counted in advance (``auth/throttle.py``, shared
by all processes) and the password verified, at most ``PAYOPS_AUTH_VERIFY_CONCURRENCY`` at a time
with ``PAYOPS_AUTH_VERIFY_QUEUE`` waiting, beyond which the answer is 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from payops.auth import repository
from payops.auth.metrics import AuthMetrics
from payops.auth.permissions import ALL_PERMISSIONS, API_KEY_PERMISSIONS
from payops.auth.secrets import (
    MAX_PASSWORD_BYTES,
    MAX_USERNAME_LENGTH,
    api_secret_matches,
    verify_password,
)
from payops.auth.throttle import FailureThrottle
from payops.domain import messages
from payops.errors import AuthenticationFailed, DetailError

if TYPE_CHECKING:
    from payops.config import Settings
    from payops.db import Database
    from payops.db.models import User

# base64 of the longest acceptable "username:password" (4 bytes per character at most in UTF-8).
MAX_BASIC_CREDENTIAL_CHARS = 4 * math.ceil((4 * MAX_USERNAME_LENGTH + 1 + MAX_PASSWORD_BYTES) / 3)
# "<8-character prefix>.<32-character secret>", with room to spare; longer is refused unread.
MAX_API_KEY_CHARS = 128
VERIFIED_CACHE_MAX_ENTRIES = 10_000


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


@dataclass(frozen=True)
class _Verified:
    user_id: int
    credentials_version: int
    expires_at: float  # monotonic


class VerifiedCache:
    """Passwords this process has verified, under a keyed hash of "username:password", with the
    user's credentials_version at the time: a bumped version (password change, deactivation,
    permission change, in any process) makes the entry worthless at once. Bounded: the oldest
    entry goes first, never the whole cache."""

    def __init__(self, ttl: float, max_entries: int = VERIFIED_CACHE_MAX_ENTRIES) -> None:
        self.ttl, self.max_entries = ttl, max_entries
        self._key = secrets.token_bytes(32)
        self._entries: OrderedDict[bytes, _Verified] = OrderedDict()

    def fingerprint(self, credential: str) -> bytes:
        return hmac.new(self._key, credential.encode(), hashlib.sha256).digest()

    def get(self, fingerprint: bytes) -> _Verified | None:
        entry = self._entries.get(fingerprint)
        if entry is not None and entry.expires_at <= time.monotonic():
            del self._entries[fingerprint]
            return None
        return entry

    def put(self, fingerprint: bytes, user: User) -> None:
        now = time.monotonic()
        self._entries.pop(fingerprint, None)
        # Entries go in with one TTL, so the front is both the oldest and the first to expire.
        while self._entries and (
            next(iter(self._entries.values())).expires_at <= now
            or len(self._entries) >= self.max_entries
        ):
            self._entries.popitem(last=False)
        self._entries[fingerprint] = _Verified(user.id, user.credentials_version, now + self.ttl)

    def discard(self, fingerprint: bytes) -> None:
        self._entries.pop(fingerprint, None)

    def __len__(self) -> int:
        return len(self._entries)


class VerificationGate:
    """Bounds the argon2id verifications of one process: ``concurrency`` run, up to ``queue`` more
    wait, the next is refused at once (503), so a flood of bad logins cannot starve API keys and
    cached users of CPU."""

    def __init__(self, concurrency: int, queue: int, metrics: AuthMetrics) -> None:
        self.capacity = concurrency + queue
        self.admitted = 0
        self._slots = asyncio.Semaphore(concurrency)
        self._running = metrics.verifications.labels("running")
        self._queued = metrics.verifications.labels("queued")
        self._refused = metrics.verifications_refused

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self.admitted >= self.capacity:
            self._refused.inc()
            raise DetailError(messages.BUSY, 503, {"Retry-After": "1"})
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def verify(self, password_hash: str | None, password: str) -> bool:
        self._queued.inc()
        try:
            await self._slots.acquire()
        finally:
            self._queued.dec()
        self._running.inc()
        verification = asyncio.ensure_future(
            asyncio.to_thread(verify_password, password_hash, password)
        )

        def release(_: object) -> None:
            # Only when the thread is done: a client that hangs up must not free the slot
            # while its verification still burns CPU.
            self._running.dec()
            self._slots.release()

        verification.add_done_callback(release)
        return await asyncio.shield(verification)


class Authenticator:
    def __init__(
        self, settings: Settings, db: Database, metrics: AuthMetrics | None = None
    ) -> None:
        self.db = db
        self.metrics = metrics or AuthMetrics()
        self.cache = VerifiedCache(settings.auth_cache_seconds)
        self.throttle = FailureThrottle(settings, db, self.metrics)
        self.gate = VerificationGate(
            settings.auth_verify_concurrency, settings.auth_verify_queue, self.metrics
        )
        self._in_flight: dict[bytes, asyncio.Future[User]] = {}

    async def authenticate(self, authorization: str | None, client: str) -> Principal:
        if not authorization:
            raise AuthenticationFailed(messages.AUTH_MISSING)
        scheme, _, credential = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return await self._basic(credential.strip(), client)
        if scheme == "api-key":
            return await self._api_key(credential.strip(), client)
        raise AuthenticationFailed(messages.AUTH_MISSING)

    async def _basic(self, credential: str, client: str) -> Principal:
        if not credential:
            raise AuthenticationFailed(messages.AUTH_BASIC_NO_CREDENTIALS)
        if " " in credential:
            raise AuthenticationFailed(messages.AUTH_BASIC_SPACES)
        if len(credential) > MAX_BASIC_CREDENTIAL_CHARS:
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC)
        try:
            raw = base64.b64decode(credential, validate=True)
        except binascii.Error:
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC_HEADER) from None
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            # DRF's fallback: Python's requests (HTTPBasicAuth) sends str credentials as latin-1.
            decoded = raw.decode("latin-1")
        username, sep, password = decoded.partition(":")
        if not sep:
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC_HEADER)
        if len(username) > MAX_USERNAME_LENGTH or len(password.encode()) > MAX_PASSWORD_BYTES:
            # No such account can exist: refused before any lookup, hash or counter.
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC)

        fingerprint = self.cache.fingerprint(decoded)
        cached = self.cache.get(fingerprint)
        if cached is not None:
            async with self.db.read() as session:
                user = await repository.user_by_id(session, cached.user_id)
            if user is not None and user.credentials_version == cached.credentials_version:
                return _user_principal(user)
            self.cache.discard(fingerprint)

        # The same credential arriving several times at once (a client starting many requests
        # cold) is verified once: the others wait for that answer and share it, 401 or 429
        # included, without a queue place, a counted failure or a verification of their own.
        while (leader := self._in_flight.get(fingerprint)) is not None:
            await asyncio.wait([leader])
            if not leader.cancelled():  # a cancelled leader (client gone): try again
                return _user_principal(leader.result())
        outcome: asyncio.Future[User] = asyncio.get_running_loop().create_future()
        self._in_flight[fingerprint] = outcome
        try:
            user = await self._verify(username, password, client)
            outcome.set_result(user)
        except Exception as exc:
            outcome.set_exception(exc)
            outcome.exception()  # retrieved: no "never retrieved" warning without followers
            raise
        except BaseException:  # cancelled (the client went away) or the process is stopping
            outcome.cancel()
            raise
        finally:
            del self._in_flight[fingerprint]
        return _user_principal(user, remember=(self.cache, fingerprint))

    async def _verify(self, username: str, password: str, client: str) -> User:
        """The slow path: count the attempt in advance, verify within the gate, settle the count."""
        async with self.gate.admit():
            reservation = await self.throttle.reserve_login(username, client)
            async with self.db.read() as session:
                user = await repository.user_by_username(session, username)
            ok = await self.gate.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            self.metrics.failures.labels("basic").inc()
            self.throttle.failed(reservation, username, known_user=user is not None)
            raise AuthenticationFailed(messages.AUTH_INVALID_BASIC)
        await self.throttle.forgive(reservation)
        return user

    async def _api_key(self, credential: str, client: str) -> Principal:
        prefix, sep, secret = credential.partition(".")
        key = None
        if sep and secret and len(credential) <= MAX_API_KEY_CHARS:
            async with self.db.direct_read() as conn:
                key = await repository.api_key_check(conn, prefix)
        now = datetime.now(UTC)
        if (
            key is None
            or not api_secret_matches(secret, key.secret_hash)
            or key.revoked_at is not None
            or (key.expires_at is not None and key.expires_at <= now)
        ):
            self.metrics.failures.labels("api_key").inc()
            if len(credential) <= MAX_API_KEY_CHARS:
                await self.throttle.count_key_failure(client)  # 429 past the address limit
            raise AuthenticationFailed(messages.AUTH_INVALID_KEY)
        # A valid key is never throttled: it costs one indexed lookup and one SHA-256.
        return Principal("api_key", f"api_key:{key.prefix}", API_KEY_PERMISSIONS, {})


def _user_principal(user: User, remember: tuple[VerifiedCache, bytes] | None = None) -> Principal:
    if not user.is_active:
        raise AuthenticationFailed(messages.AUTH_INACTIVE)
    if remember is not None:
        cache, fingerprint = remember
        cache.put(fingerprint, user)
    permissions = (
        ALL_PERMISSIONS if user.is_superuser else frozenset(p.code for p in user.permissions)
    )
    initiator = {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "username": user.username,
        "email": user.email,
        "phone": user.phone,
    }
    return Principal("user", user.username, permissions, initiator)
