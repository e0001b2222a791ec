"""Payment status inquiry (PSQ): answer from storage for paid/authorized transactions, ask the
gateways for the inquirable states and apply a late success, optionally disclose the result."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from payops import audit
from payops.auth.service import Principal
from payops.connectors.base import GatewayResult, Outcome
from payops.context import AppContext
from payops.db.models import PaymentAttempt
from payops.domain import messages
from payops.domain.rules import InquiryPath, RuleViolation, inquiry_path
from payops.errors import ApiError, InquiryFailed, Throttled
from payops.gateways.service import ask_gateway, supported_operations
from payops.inquiry import repository as inquiries
from payops.inquiry.throttle import ThrottlePolicy, seconds_to_wait
from payops.transactions import repository
from payops.transactions.lookup import Lookup
from payops.transactions.presenters import payment_body
from payops.transactions.service import apply_attempt_result, payment_ref
from payops.webhooks import outbox

log = logging.getLogger(__name__)


class InquiryNotFound(ApiError):
    status_code = 404

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail, "result": "failed"})


async def inquire(
    ctx: AppContext,
    principal: Principal,
    lookup: Lookup,
    *,
    disclose: bool = False,
    disclosure_url: str | None = None,
) -> dict[str, Any]:
    try:
        return await _inquire(ctx, principal, lookup, disclose, disclosure_url)
    except ApiError as error:
        async with ctx.db.write() as session:
            parent = await repository.find_parent(
                session, order_no=lookup.order_no, session_id=lookup.session_id
            )
            audit.record(
                session,
                principal,
                "inquiry",
                "refused",
                parent,
                order_no=lookup.label,
                status=error.status_code,
                body=error.body,
            )
        raise


async def _inquire(
    ctx: AppContext,
    principal: Principal,
    lookup: Lookup,
    disclose: bool,
    disclosure_url: str | None,
) -> dict[str, Any]:
    async with ctx.db.read() as session:
        parent = await repository.find_parent(
            session, order_no=lookup.order_no, session_id=lookup.session_id
        )
        if parent is None:
            raise InquiryNotFound(lookup.not_found_message)
        if lookup.names_other_than(parent):
            raise InquiryFailed(messages.LOOKUP_MISMATCH)
        # The order of Ottu's v1 documentation (decisions §13): unknown order → no attempts →
        # disclosure without URL → state not inquirable.
        order_label = parent.order_no or parent.session_id
        attempts = await repository.attempts(session, parent.id)
        if not attempts:
            raise InquiryFailed(messages.NO_ATTEMPTS.format(order_no=order_label))
        target = (disclosure_url or parent.webhook_url) if disclose else ""
        if disclose and not target:
            raise InquiryFailed(messages.NO_DISCLOSURE_URL.format(order_no=order_label))
        try:
            path = inquiry_path(parent.state)
        except RuleViolation as violation:
            raise InquiryFailed(violation.message) from None
        parent_id = parent.id
    if path == InquiryPath.GATEWAY:
        await _admit(ctx, parent_id)
        await _ask_gateways(ctx, parent_id, attempts)
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
        body = payment_body(
            parent,
            await repository.attempts(session, parent_id),
            await repository.operations(session, parent_id),
            key,
        )
        if disclose:
            outbox.enqueue(
                session,
                kind="disclosure",
                target_url=target,
                payload=body,
                transaction_id=parent_id,
            )
        audit.record(
            session, principal, "inquiry", "success", parent, path=path.value, disclosed_to=target
        )
    return body


async def _admit(ctx: AppContext, parent_id: int) -> None:
    """Apply inquiry throttling and record this gateway inquiry (decisions §4)."""
    settings = ctx.settings
    if not settings.inquiry_throttle:
        return
    policy = ThrottlePolicy(
        initial_delay=timedelta(seconds=settings.inquiry_throttle_initial_delay_seconds),
        gap=timedelta(seconds=settings.inquiry_throttle_gap_seconds),
        daily_max=settings.inquiry_throttle_daily_max,
        global_per_minute=settings.inquiry_throttle_global_per_minute,
    )
    now = datetime.now(UTC)
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        if not ctx.db.is_sqlite:
            # The global per-minute limit counts every transaction's inquiries: admissions for
            # different transactions (in any process) must take turns, or each sees the same
            # count and all pass. Held to commit; always taken after the parent's lock.
            # (SQLite write transactions take turns already.)
            await inquiries.take_global_turn(session)
        served = await inquiries.inquiries_since(session, now - inquiries.DAY, parent_id=parent_id)
        recent = await inquiries.inquiries_since(session, now - inquiries.MINUTE)
        wait = seconds_to_wait(
            policy,
            now=now,
            created_at=parent.created_at,
            served_for_transaction=list(served),
            served_last_minute_all=list(recent),
        )
        if wait > 0:
            raise Throttled(math.ceil(wait))
        inquiries.record_inquiry(session, parent_id, now)


async def ask_gateways_about(ctx: AppContext, parent_id: int) -> None:
    """Ask the gateways about a transaction's attempts now (a gateway notified us)."""
    async with ctx.db.read() as session:
        attempts = await repository.attempts(session, parent_id)
    await _ask_gateways(ctx, parent_id, attempts)


async def _ask_gateways(ctx: AppContext, parent_id: int, attempts: list[PaymentAttempt]) -> None:
    """Ask each attempted gateway that supports inquiry, newest attempt first; stop at a success."""
    for attempt in attempts:
        gateway = attempt.gateway_config
        if "inquiry" not in supported_operations(gateway):
            continue
        result = await _inquire_attempt(ctx, attempt)
        if result.outcome not in (Outcome.SUCCESS, Outcome.FAILED):
            continue
        async with ctx.db.write() as session:
            parent = await repository.lock_parent_by_id(session, parent_id)
            stored = await session.get(PaymentAttempt, attempt.id)
            if stored is None:
                return
            await apply_attempt_result(session, parent, stored, result)
        if result.outcome == Outcome.SUCCESS:
            return


async def _inquire_attempt(ctx: AppContext, attempt: PaymentAttempt) -> GatewayResult:
    return await ask_gateway(
        attempt.gateway_config,
        ctx.settings,
        lambda c: c.inquire_payment(payment_ref(attempt)),
        attempt.reference_number,
    )
