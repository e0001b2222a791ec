"""Delivering outbox events to merchants (decisions §10).

At-least-once: an event stays ``pending`` until a receiver answers 2xx. Each try is recorded.
Timeouts, connection errors, 5xx, 408 and 429 are retried with exponential backoff and jitter;
any other answer (other 4xx, a redirect, a refused target) ends the event as ``failed``.
Workers take an event by moving its ``next_attempt_at`` forward with a conditional UPDATE (a
lease), so several workers or server processes never send one event at the same time. Events of
one transaction go out in the order they were written: an event waits while an older one of the
same transaction is still pending.

Each send has one total deadline (DNS, connect, request and the whole answer together), and the
lease outlasts it by ``LEASE_MARGIN_SECONDS``: a receiver that drips its answer a byte at a time
loses the connection at the deadline and can never keep an event past its lease, so no second
worker sends it while the first is still sending. A pass sends the events of different
transactions concurrently (at most ``PAYOPS_WEBHOOK_CONCURRENCY`` at once); only the oldest
pending event of each transaction is ever due, which keeps each transaction's order.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx

from payops import exact_json
from payops.db.models import OutboxEvent, WebhookAttempt
from payops.webhooks import outbox, repository
from payops.webhooks.signing import sign
from payops.webhooks.targets import TargetRefused, TargetUnresolved, resolve

if TYPE_CHECKING:  # the context is built from this package: name its type only
    from payops.context import AppContext

log = logging.getLogger(__name__)

RESPONSE_EXCERPT_BYTES = 2048
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "PayOps-Webhooks/0.1"
# What the lease adds to the send deadline: room for reading the event and recording the try.
LEASE_MARGIN_SECONDS = 30.0


@dataclass(frozen=True)
class SendResult:
    status_code: int | None
    latency_ms: int
    error: str
    excerpt: str

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        if self.error.startswith("refused:"):
            return False
        if self.status_code is None:
            return True  # timeout, connection error
        return self.status_code >= 500 or self.status_code in RETRYABLE_STATUS


def backoff_seconds(attempt: int, base: float, factor: float, cap: float) -> float:
    """Delay after the ``attempt``-th failed try (1-based), with ±20 % jitter."""
    delay = min(base * factor ** (attempt - 1), cap)
    return delay * random.uniform(0.8, 1.2)


def _now() -> datetime:
    return datetime.now(UTC)


async def due_events(ctx: AppContext, limit: int) -> list[int]:
    async with ctx.db.read() as session:
        return await repository.due_event_ids(session, _now(), limit)


def lease_seconds(ctx: AppContext) -> float:
    return ctx.settings.webhook_timeout_seconds + LEASE_MARGIN_SECONDS


async def claim(ctx: AppContext, event_id: int) -> float | None:
    """Take the event for one send; returns the monotonic time by which the send must end (well
    inside the lease), or None when another worker holds it or it is not due."""
    started = time.monotonic()
    now = _now()
    async with ctx.db.write() as session:
        if not await repository.take_send_lease(
            session, event_id, now, now + timedelta(seconds=lease_seconds(ctx))
        ):
            return None
    # Measured from before the UPDATE: waiting for the write lock eats into the budget, never
    # into the margin that protects the lease.
    return started + ctx.settings.webhook_timeout_seconds


async def send(
    ctx: AppContext, event: OutboxEvent, body: dict[str, object], deadline: float | None = None
) -> SendResult:
    """One POST; everything (resolution, connection, request, the whole answer) ends by
    ``deadline`` (monotonic; default: the webhook timeout from now)."""
    started = time.perf_counter()
    if deadline is None:
        deadline = time.monotonic() + ctx.settings.webhook_timeout_seconds
    budget = deadline - time.monotonic()
    if budget <= 0:
        return SendResult(None, 0, "deadline passed before sending", "")
    try:
        async with asyncio.timeout(budget):
            return await _post(ctx, event, body, started)
    except TimeoutError:
        latency = int((time.perf_counter() - started) * 1000)
        return SendResult(None, latency, "timeout: no complete answer before the deadline", "")


async def _post(
    ctx: AppContext, event: OutboxEvent, body: dict[str, object], started: float
) -> SendResult:
    try:
        target = await resolve(event.target_url, allow_private=ctx.settings.webhook_allow_private)
    except TargetRefused as refusal:
        return SendResult(None, 0, f"refused: {refusal}"[:255], "")
    except TargetUnresolved as failure:
        # DNS fails for ordinary reasons (an outage, a record not yet published): retry.
        latency = int((time.perf_counter() - started) * 1000)
        return SendResult(None, latency, f"dns: {failure}"[:255], "")
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "X-PayOps-Event-Id": event.event_id,
        "X-PayOps-Event-Kind": event.kind,
        "X-PayOps-Attempt": str(event.attempts + 1),
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    # The per-read timeout is only a backstop; the caller's total deadline is what bounds a send.
    timeout = httpx.Timeout(ctx.settings.webhook_timeout_seconds)
    try:
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False
        ) as client:
            # exact_json: a merchant's extra decimals go out as they were accepted.
            request = client.build_request(
                "POST",
                target.url,
                content=exact_json.dumps(body).encode("utf-8"),
                headers=headers,
                extensions=extensions,
            )
            response = await client.send(request, stream=True)
            try:
                excerpt = b""
                async for chunk in response.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                        break
            finally:
                await response.aclose()
        latency = int((time.perf_counter() - started) * 1000)
        return SendResult(
            response.status_code,
            latency,
            "",
            excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace"),
        )
    except (httpx.HTTPError, OSError) as exc:
        latency = int((time.perf_counter() - started) * 1000)
        return SendResult(None, latency, type(exc).__name__, "")


async def deliver_event(ctx: AppContext, event_id: int, deadline: float | None = None) -> str:
    """Send one claimed event once and record the try; returns its state afterwards."""
    async with ctx.db.read() as session:
        event = await session.get_one(OutboxEvent, event_id)
        key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
    # Signed at send time, so a rotated key applies to everything not yet delivered.
    body = dict(event.payload)
    body.pop("signature", None)
    body["signature"] = sign(body, key)
    result = await send(ctx, event, body, deadline)
    settings = ctx.settings
    async with ctx.db.write() as session:
        stored = await session.get_one(
            OutboxEvent, event_id, with_for_update=True, populate_existing=True
        )
        stored.attempts += 1
        session.add(
            WebhookAttempt(
                event_id=stored.id,
                attempt=stored.attempts,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                error=result.error[:255],
                response_excerpt=result.excerpt,
            )
        )
        if result.delivered:
            stored.state = "delivered"
            stored.delivered_at = _now()
            stored.last_error = ""
        elif result.retryable and stored.attempts < settings.webhook_max_attempts:
            stored.next_attempt_at = _now() + timedelta(
                seconds=backoff_seconds(
                    stored.attempts,
                    settings.webhook_backoff_base_seconds,
                    settings.webhook_backoff_factor,
                    settings.webhook_backoff_cap_seconds,
                )
            )
            stored.last_error = result.error or f"HTTP {result.status_code}"
        else:
            stored.state = "failed"
            stored.last_error = (result.error or f"HTTP {result.status_code}")[:255]
            log.warning("webhook %s failed for good: %s", stored.event_id, stored.last_error)
        return stored.state


async def deliver_due(ctx: AppContext, limit: int = 100) -> dict[str, int]:
    """One pass: every due event (at most ``limit``), sent concurrently by a bounded pool. Each
    transaction has at most one due event, so concurrency never reorders a transaction's events."""
    outcomes: dict[str, int] = {}
    pool = asyncio.Semaphore(max(1, ctx.settings.webhook_concurrency))

    async def one(event_id: int) -> None:
        async with pool:
            deadline = await claim(ctx, event_id)
            if deadline is None:
                return
            state = await deliver_event(ctx, event_id, deadline)
            outcomes[state] = outcomes.get(state, 0) + 1

    results = await asyncio.gather(
        *(one(event_id) for event_id in await due_events(ctx, limit)), return_exceptions=True
    )
    for failure in results:
        if isinstance(failure, BaseException):
            # A try that could not be recorded stays leased and is sent again after the lease.
            log.error("webhook delivery task failed: %r", failure)
    return outcomes
