"""Automatic inquiry of payment attempts still pending (issue 17).

A customer who pays at a gateway's page and never comes back leaves an attempt ``pending``. Once
its configuration's inquiry window has passed (``inquiry_window_minutes``; 0 means the
connector's ``attempt_inquiry_minutes``, Ottu's defaults), PayOps asks the gateway about it, and
again one window later, at most ``MAX_AUTOMATIC_INQUIRIES`` times. A final answer is applied
with ``apply_attempt_result`` (the payment webhook as for any other answer). Without one, the
attempt stays pending and joins the operator review queue (transactions/attempt_review.py).

Several workers and processes may run this at once: each inquiry is claimed with a conditional
UPDATE (the inquiry count, the next time and a lease), so one attempt is never asked about twice
at once and never more than three times. These inquiries are PayOps's own: they are not counted
against the merchant's inquiry throttle.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from payops import audit
from payops.auth.service import SETTLEMENT
from payops.connectors.base import GatewayResult, Outcome
from payops.connectors.registry import connector_class
from payops.context import AppContext
from payops.db.models import GatewayConfig, PaymentAttempt
from payops.gateways.service import ask_gateway, call_budget_seconds, supported_operations
from payops.transactions import attempt_repository, repository
from payops.transactions.attempt_repository import MAX_AUTOMATIC_INQUIRIES
from payops.transactions.service import apply_attempt_result, payment_ref

log = logging.getLogger(__name__)

FINAL = (Outcome.SUCCESS, Outcome.FAILED)


def _now() -> datetime:
    return datetime.now(UTC)


def inquiry_window(config: GatewayConfig) -> timedelta:
    """How long after an attempt starts (and between two automatic inquiries) PayOps waits."""
    minutes = (
        config.inquiry_window_minutes or connector_class(config.connector).attempt_inquiry_minutes
    )
    return timedelta(minutes=max(1, int(minutes)))


def _takes_payments(config: GatewayConfig) -> bool:
    try:
        return connector_class(config.connector).takes_payments
    except ValueError:
        return False


def _due(attempt: PaymentAttempt, now: datetime) -> bool:
    config = attempt.gateway_config
    if not _takes_payments(config):
        return False
    if attempt.next_inquiry_at is not None:
        return attempt.next_inquiry_at <= now
    return attempt.created_at + inquiry_window(config) <= now


async def inquire_due_attempts(
    ctx: AppContext, now: datetime | None = None, *, limit: int = 200
) -> int:
    """Ask the gateways about every attempt whose automatic inquiry is due; returns how many
    inquiries this call made (an attempt another worker claimed first is not counted)."""
    now = now or _now()
    async with ctx.db.read() as session:
        due = [
            (a.id, a.inquiry_count, a.gateway_config)
            for a in await attempt_repository.inquiry_candidates(session, now, limit)
            if _due(a, now)
        ]
    asked = 0
    for attempt_id, seen, config in due:
        asked += await _inquire(ctx, attempt_id, seen, config, now)
    return asked


async def _inquire(
    ctx: AppContext, attempt_id: int, seen: int, config: GatewayConfig, now: datetime
) -> bool:
    can_ask = "inquiry" in supported_operations(config)
    # A configuration that cannot be asked has nothing to wait for: the attempt goes to an
    # operator at once.
    count = seen + 1 if can_ask else MAX_AUTOMATIC_INQUIRIES
    lease = now + timedelta(seconds=call_budget_seconds(config, ctx.settings))
    async with ctx.db.write() as session:
        if not await attempt_repository.claim_inquiry(
            session,
            attempt_id,
            seen_count=seen,
            now=now,
            lease_until=lease,
            next_at=now + inquiry_window(config),
            count_to=count,
        ):
            return False
    try:
        result = await _ask(ctx, attempt_id) if can_ask else None
        if result is not None and result.outcome in FINAL:
            await _apply(ctx, attempt_id, result)
        elif count >= MAX_AUTOMATIC_INQUIRIES:
            await _to_review(ctx, attempt_id, count, result)
    finally:
        async with ctx.db.write() as session:
            await attempt_repository.release(session, attempt_id)
    return can_ask


async def _ask(ctx: AppContext, attempt_id: int) -> GatewayResult:
    async with ctx.db.read() as session:
        attempt = await session.get_one(PaymentAttempt, attempt_id)
        ref, config, label = payment_ref(attempt), attempt.gateway_config, attempt.reference_number
    return await ask_gateway(config, ctx.settings, lambda c: c.inquire_payment(ref), label)


async def apply_answer(
    ctx: AppContext,
    attempt_id: int,
    result: GatewayResult,
    open_states: tuple[str, ...] = ("pending",),
) -> str:
    """Apply a gateway's final answer about an attempt still open, under its parent's lock;
    returns the attempt's state after it."""
    async with ctx.db.write() as session:
        parent_id = (await session.get_one(PaymentAttempt, attempt_id)).transaction_id
        parent = await repository.lock_parent_by_id(session, parent_id)
        attempt = await attempt_repository.lock(session, attempt_id)
        if attempt.state in open_states:
            await apply_attempt_result(session, parent, attempt, result)
            if result.review_reason and attempt.state == "success" and not attempt.review_reason:
                attempt.review_reason = result.review_reason
        return attempt.state


async def _apply(ctx: AppContext, attempt_id: int, result: GatewayResult) -> None:
    state = await apply_answer(ctx, attempt_id, result)
    log.info("automatic inquiry of attempt %s: %s", attempt_id, state)


async def _to_review(
    ctx: AppContext, attempt_id: int, count: int, result: GatewayResult | None
) -> None:
    async with ctx.db.write() as session:
        attempt = await session.get_one(PaymentAttempt, attempt_id)
        if attempt.state != "pending":
            return
        parent = await repository.lock_parent_by_id(session, attempt.transaction_id)
        audit.record(
            session,
            SETTLEMENT,
            "attempt.review",
            "needs_review",
            parent,
            reference_number=attempt.reference_number,
            automatic_inquiries=count,
            gateway_outcome=result.outcome.value if result else "not_asked",
        )
    log.warning(
        "payment attempt %s: no final answer after %d automatic inquiries; it needs review",
        attempt.reference_number,
        count,
    )
