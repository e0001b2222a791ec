"""The failed-login throttle, shared by every server process through the ``auth_failures`` table.

Three kinds of counter, each over a fixed window of ``PAYOPS_AUTH_FAILURE_WINDOW_SECONDS``:
- ``pair:<username digest>@<address>``: guesses at one account from one place; 429 past
  ``PAYOPS_AUTH_FAILURE_LIMIT``;
- ``addr:<address>``: every failure from one place; 429 past ``PAYOPS_AUTH_ADDRESS_FAILURE_LIMIT``;
- ``user:<username digest>``: failures for one account from anywhere; never refuses anything
  (that would let anyone lock any account out), it raises an alert.
None of them stops a credential that is valid and cheap to check: an API key, or a password this
process has already verified (the caller checks those first). IPv6 addresses count by their /64,
which one host usually holds whole. The username digest is keyed with the deployment's secret,
so the table never holds a typed username (sometimes a password typed in the wrong field).

A login that will run a password verification counts its failure *before* the verification, in
one atomic statement per counter, so parallel guesses cannot all pass the limit; a success takes
it back. A refused attempt is rolled back and counts nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import time
from dataclasses import dataclass, field
from typing import NoReturn

from payops.auth import repository
from payops.auth.metrics import AuthMetrics
from payops.config import Settings
from payops.db import Database
from payops.errors import Throttled

log = logging.getLogger("payops.auth")

ADDRESS_KEY_LENGTH = 64


def address_key(address: str) -> str:
    """The counted form of a client address: an IPv4 address, an IPv6 /64, or the text as given."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:ADDRESS_KEY_LENGTH]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@dataclass
class Reservation:
    """Failures counted in advance: (key, window end) for each, to take back on success."""

    counted: list[tuple[str, int]] = field(default_factory=list)
    username_failures: int = 0


class FailureThrottle:
    def __init__(self, settings: Settings, db: Database, metrics: AuthMetrics) -> None:
        self.settings, self.db, self.metrics = settings, db, metrics
        self.window_ms = int(settings.auth_failure_window_seconds * 1000)
        self._digest_key: bytes | None = None
        self._next_sweep = 0.0

    def _digest(self, username: str) -> str:
        if self._digest_key is None:
            from payops.gateways.crypto import load_or_create_key

            self._digest_key = hmac.new(
                load_or_create_key(self.settings), b"payops auth throttle", hashlib.sha256
            ).digest()
        return hmac.new(self._digest_key, username.encode(), hashlib.sha256).hexdigest()[:32]

    def login_keys(self, username: str, address: str) -> tuple[str, str, str]:
        digest, where = self._digest(username), address_key(address)
        return f"pair:{digest}@{where}", f"addr:{where}", f"user:{digest}"

    async def reserve_login(self, username: str, address: str) -> Reservation:
        """Count a password attempt as failed now; 429 if its pair or address is over the limit."""
        pair, addr, user = self.login_keys(username, address)
        return await self._reserve(
            [
                (pair, self.settings.auth_failure_limit, "pair"),
                (addr, self.settings.auth_address_failure_limit, "address"),
            ],
            alert_key=user,
        )

    async def count_key_failure(self, address: str) -> None:
        """A wrong API key: one failure for the address; 429 once it is over the limit."""
        addr = f"addr:{address_key(address)}"
        await self._reserve([(addr, self.settings.auth_address_failure_limit, "address")])

    async def _reserve(
        self, limited: list[tuple[str, int, str]], alert_key: str | None = None
    ) -> Reservation:
        now_ms = int(time.time() * 1000)
        # A read first: a flood against a spent counter is answered without taking a write lock.
        async with self.db.read() as session:
            current = await repository.current_failures(session, [k for k, _, _ in limited], now_ms)
        spent = [
            (current[key][1], scope)
            for key, limit, scope in limited
            if key in current and current[key][0] >= limit
        ]
        if spent:
            self._refuse(max(spent), now_ms)
        reservation = Reservation()
        async with self.db.write() as session:
            refused: list[tuple[int, str]] = []
            for key, limit, scope in limited:
                failures, window_ends_ms = await repository.count_failure(
                    session, key, now_ms, self.window_ms
                )
                reservation.counted.append((key, window_ends_ms))
                if failures > limit:
                    refused.append((window_ends_ms, scope))
            if refused:
                # Raising rolls the transaction back: a refused attempt counts nothing.
                self._refuse(max(refused), now_ms)
            if alert_key is not None:
                reservation.username_failures, window_ends_ms = await repository.count_failure(
                    session, alert_key, now_ms, self.window_ms
                )
                reservation.counted.append((alert_key, window_ends_ms))
        await self._sweep_if_due(now_ms)
        return reservation

    def _refuse(self, spent: tuple[int, str], now_ms: int) -> NoReturn:
        window_ends_ms, scope = spent
        self.metrics.throttled.labels(scope).inc()
        raise Throttled(math.ceil((window_ends_ms - now_ms) / 1000))

    async def forgive(self, reservation: Reservation) -> None:
        async with self.db.write() as session:
            await repository.uncount_failures(session, reservation.counted)

    def failed(self, reservation: Reservation, username: str, *, known_user: bool) -> None:
        """The reserved attempt did fail: alert once when one username reaches the threshold."""
        if reservation.username_failures != self.settings.auth_username_alert_threshold:
            return
        self.metrics.username_alerts.inc()
        # Name the account only if it exists: an unknown "username" may be a mistyped password.
        who = (
            repr(username) if known_user else f"unknown username (digest {self._digest(username)})"
        )
        log.warning(
            "many failed logins for %s: %d from any address within %d s; no lockout, "
            "per-address limits apply",
            who,
            reservation.username_failures,
            int(self.settings.auth_failure_window_seconds),
        )

    async def _sweep_if_due(self, now_ms: int) -> None:
        if time.monotonic() < self._next_sweep:
            return
        self._next_sweep = time.monotonic() + self.settings.auth_throttle_sweep_seconds
        try:
            async with self.db.write() as session:
                await repository.sweep_failures(
                    session, now_ms, self.settings.auth_throttle_max_entries
                )
        except Exception:  # housekeeping: a failed sweep must not fail a login
            log.exception("failed-login counter sweep failed")
