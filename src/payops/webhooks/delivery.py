"""Delivering outbox events to merchants (decisions §10).

At-least-once: an event stays ``pending`` until a receiver answers 2xx. Each try is recorded.
Timeouts, connection errors, 5xx, 408 and 429 are retried with exponential backoff and jitter;
any other answer (other 4xx, a redirect, a refused target) ends the event as ``failed``.
Workers take an event by moving its ``next_attempt_at`` forward with a conditional UPDATE (a
lease), so several workers or server processes never send one event at the same time. Events of
one transaction go out in the order they were written: an event waits while an older one of the
same transaction is still pending.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy import and_, exists, select, update
from sqlalchemy.orm import aliased

from payops import exact_json
from payops.context import AppContext
from payops.db.models import OutboxEvent, WebhookAttempt
from payops.webhooks import outbox
from payops.webhooks.signing import sign
from payops.webhooks.targets import TargetRefused, resolve

log = logging.getLogger(__name__)

RESPONSE_EXCERPT_BYTES = 2048
RETRYABLE_STATUS = frozenset({408, 429})
USER_AGENT = "PayOps-Webhooks/0.1"


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
    return datetime.now(timezone.utc)


async def due_events(ctx: AppContext, limit: int) -> list[int]:
    older = aliased(OutboxEvent)
    now = _now()
    async with ctx.db.read() as session:
        rows = await session.scalars(
            select(OutboxEvent.id)
            .where(
                OutboxEvent.state == "pending",
                OutboxEvent.next_attempt_at <= now,
                ~exists().where(and_(
                    older.transaction_id == OutboxEvent.transaction_id,
                    older.id < OutboxEvent.id,
                    older.state == "pending",
                )),
            )
            .order_by(OutboxEvent.id)
            .limit(limit)
        )
        return list(rows)


async def claim(ctx: AppContext, event_id: int) -> bool:
    now = _now()
    lease = timedelta(seconds=ctx.settings.webhook_timeout_seconds * 2 + 30)
    async with ctx.db.write() as session:
        result = await session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.id == event_id, OutboxEvent.state == "pending",
                   OutboxEvent.next_attempt_at <= now)
            .values(next_attempt_at=now + lease)
        )
        return result.rowcount == 1


async def send(ctx: AppContext, event: OutboxEvent, body: dict[str, object]) -> SendResult:
    started = time.perf_counter()
    try:
        target = await resolve(event.target_url, allow_private=ctx.settings.webhook_allow_private)
    except TargetRefused as refusal:
        return SendResult(None, 0, f"refused: {refusal}"[:255], "")
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Content-Type": "application/json",
        "X-PayOps-Event-Id": event.event_id,
        "X-PayOps-Event-Kind": event.kind,
        "X-PayOps-Attempt": str(event.attempts + 1),
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    timeout = httpx.Timeout(ctx.settings.webhook_timeout_seconds)
    try:
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                     trust_env=False) as client:
            # exact_json: a merchant's extra decimals go out as they were accepted.
            request = client.build_request("POST", target.url,
                                           content=exact_json.dumps(body).encode("utf-8"),
                                           headers=headers, extensions=extensions)
            response = await asyncio.wait_for(
                client.send(request, stream=True), ctx.settings.webhook_timeout_seconds
            )
            try:
                excerpt = b""
                async for chunk in response.aiter_bytes():
                    excerpt += chunk
                    if len(excerpt) >= RESPONSE_EXCERPT_BYTES:
                        break
            finally:
                await response.aclose()
        latency = int((time.perf_counter() - started) * 1000)
        return SendResult(response.status_code, latency, "",
                          excerpt[:RESPONSE_EXCERPT_BYTES].decode("utf-8", "replace"))
    except (httpx.HTTPError, asyncio.TimeoutError, OSError) as exc:
        latency = int((time.perf_counter() - started) * 1000)
        return SendResult(None, latency, type(exc).__name__, "")


async def deliver_event(ctx: AppContext, event_id: int) -> str:
    """Send one claimed event once and record the try; returns its state afterwards."""
    async with ctx.db.read() as session:
        event = await session.get_one(OutboxEvent, event_id)
        key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
    # Signed at send time, so a rotated key applies to everything not yet delivered.
    body = dict(event.payload)
    body.pop("signature", None)
    body["signature"] = sign(body, key)
    result = await send(ctx, event, body)
    settings = ctx.settings
    async with ctx.db.write() as session:
        stored = await session.get_one(OutboxEvent, event_id, with_for_update=True,
                                       populate_existing=True)
        stored.attempts += 1
        session.add(WebhookAttempt(
            event_id=stored.id, attempt=stored.attempts, status_code=result.status_code,
            latency_ms=result.latency_ms, error=result.error[:255],
            response_excerpt=result.excerpt,
        ))
        if result.delivered:
            stored.state = "delivered"
            stored.delivered_at = _now()
            stored.last_error = ""
        elif result.retryable and stored.attempts < settings.webhook_max_attempts:
            stored.next_attempt_at = _now() + timedelta(seconds=backoff_seconds(
                stored.attempts, settings.webhook_backoff_base_seconds,
                settings.webhook_backoff_factor, settings.webhook_backoff_cap_seconds))
            stored.last_error = result.error or f"HTTP {result.status_code}"
        else:
            stored.state = "failed"
            stored.last_error = (result.error or f"HTTP {result.status_code}")[:255]
            log.warning("webhook %s failed for good: %s", stored.event_id, stored.last_error)
        return stored.state


async def deliver_due(ctx: AppContext, limit: int = 100) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    for event_id in await due_events(ctx, limit):
        if await claim(ctx, event_id):
            state = await deliver_event(ctx, event_id)
            outcomes[state] = outcomes.get(state, 0) + 1
    return outcomes
