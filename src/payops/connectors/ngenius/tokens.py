"""N-Genius access tokens, cached per process.

PayOps builds a connector per call, so tokens live here, keyed by (host, SHA-256 of the API key)
— never the key itself — refreshed a little before they expire, and exchanged by one caller at a
time per key (``asyncio.Lock`` per event loop).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

# A token is refreshed this long before the gateway says it expires (at most a fifth of its life).
TOKEN_REFRESH_MARGIN_SECONDS = 60.0

CacheKey = tuple[str, str]


@dataclass(frozen=True)
class Token:
    value: str
    refresh_at: float  # time.monotonic()
    expires_at: float


_TOKENS: dict[CacheKey, Token] = {}
# asyncio.Lock belongs to one event loop: one set of locks per running loop.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[CacheKey, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def token_cache_key(host: str, api_key: str) -> CacheKey:
    """Cache key of an API key's tokens: the host and a SHA-256 of the key, never the key."""
    return host.rstrip("/").lower(), hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def clear_token_cache() -> None:
    _TOKENS.clear()


def cached_keys() -> list[CacheKey]:
    return list(_TOKENS)


def _lock_for(key: CacheKey) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    locks = _LOCKS.get(loop)
    if locks is None:
        locks = {}
        _LOCKS[loop] = locks
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


def _fresh(key: CacheKey, stale: str | None) -> str | None:
    cached = _TOKENS.get(key)
    if cached and cached.value != stale and time.monotonic() < cached.refresh_at:
        return cached.value
    return None


async def token(
    key: CacheKey, exchange: Callable[[], Awaitable[tuple[str, float]]], *, stale: str | None = None
) -> str:
    """A valid token for ``key``: the cached one unless it is ``stale`` (the gateway refused
    it) or near expiry; otherwise ``exchange()`` → (token, lifetime in seconds), which may raise
    and then caches nothing."""
    found = _fresh(key, stale)
    if found:
        return found
    async with _lock_for(key):
        found = _fresh(key, stale)
        if found:
            return found  # another caller refreshed it meanwhile
        _TOKENS.pop(key, None)
        now = time.monotonic()
        value, lifetime = await exchange()
        lifetime = max(float(lifetime), 0.0)
        margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 5)
        _TOKENS[key] = Token(value, now + lifetime - margin, now + lifetime)
        return value
