"""Automatic expiry: sessions still created/pending/attempted at their expiration_time become
``expired`` without anyone asking (decisions §9). A session waits while an attempt is in review
or while a pending attempt still has automatic inquiries to come (issue 17)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from payops.context import AppContext
from payops.domain.rules import EXPIRABLE
from payops.transactions import attempt_repository, repository
from payops.transactions.presenters import payment_body
from payops.webhooks import outbox

log = logging.getLogger(__name__)


async def _expire(ctx: AppContext, parent_id: int) -> bool:
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        now = datetime.now(UTC)
        if parent.state not in EXPIRABLE or parent.expires_at is None or parent.expires_at > now:
            return False
        # A charge confirmed for another amount waits for an operator; expiring the session
        # would hide a payment the customer may have made (decisions §13).
        if await repository.attempt_in_review(session, parent_id):
            return False
        # A pending attempt is asked about first (automatic inquiry): the customer may have paid
        # at the gateway. Once its inquiries are done the session expires; a success the
        # gateway reports later still applies (decisions §4).
        if await attempt_repository.has_attempt_awaiting_inquiry(session, parent_id, now):
            return False
        parent.state = "expired"
        if parent.webhook_url:
            key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
            outbox.enqueue(
                session,
                kind="payment",
                target_url=parent.webhook_url,
                payload=payment_body(
                    parent,
                    await repository.attempts(session, parent.id),
                    await repository.operations(session, parent.id),
                    key,
                ),
                transaction_id=parent.id,
            )
        return True


async def expire_due(ctx: AppContext, limit: int = 500) -> int:
    now = datetime.now(UTC)
    async with ctx.db.read() as session:
        ids = await attempt_repository.parents_due_for_expiry(session, EXPIRABLE, now, limit)
    return sum([await _expire(ctx, parent_id) for parent_id in ids])


async def expire_if_due(ctx: AppContext, session_id: str) -> None:
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, session_id=session_id)
        due = (
            parent is not None
            and parent.state in EXPIRABLE
            and parent.expires_at is not None
            and parent.expires_at <= datetime.now(UTC)
        )
        parent_id = parent.id if parent is not None else None
    if due and parent_id is not None:
        await _expire(ctx, parent_id)
