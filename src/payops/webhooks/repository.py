"""SQL for delivering outgoing webhooks: which events are due, the send lease, the answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Exists, and_, exists, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from payops.db.models import OutboxEvent, WebhookAttempt

PENDING = "pending"


def _older_pending(transaction_id: Any, event_id: Any) -> Exists:
    """An older event of the same transaction is still pending (events go out in order)."""
    older = aliased(OutboxEvent)
    return exists().where(
        and_(older.transaction_id == transaction_id, older.id < event_id, older.state == PENDING)
    )


async def due_event_ids(session: AsyncSession, now: datetime, limit: int) -> list[int]:
    """Pending events due by ``now`` with no older pending event of their transaction."""
    rows = await session.scalars(
        select(OutboxEvent.id)
        .where(
            OutboxEvent.state == PENDING,
            OutboxEvent.next_attempt_at <= now,
            ~_older_pending(OutboxEvent.transaction_id, OutboxEvent.id),
        )
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return list(rows)


async def take_send_lease(
    session: AsyncSession, event_id: int, now: datetime, until: datetime
) -> bool:
    """Take a due pending event for one send (a conditional UPDATE of its next attempt time);
    False when another worker holds it or it is not due."""
    result = await session.execute(
        update(OutboxEvent)
        .where(
            OutboxEvent.id == event_id,
            OutboxEvent.state == PENDING,
            OutboxEvent.next_attempt_at <= now,
        )
        .values(next_attempt_at=until)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def newest_pending_payment_event(
    session: AsyncSession, transaction_id: int, target_url: str
) -> OutboxEvent | None:
    return await session.scalar(
        select(OutboxEvent)
        .where(
            OutboxEvent.transaction_id == transaction_id,
            OutboxEvent.kind == "payment",
            OutboxEvent.target_url == target_url,
            OutboxEvent.state == PENDING,
        )
        .order_by(OutboxEvent.id.desc())
        .limit(1)
    )


async def has_older_pending(session: AsyncSession, transaction_id: int, event_id: int) -> bool:
    return bool(await session.scalar(select(_older_pending(transaction_id, event_id))))


async def last_status_code(session: AsyncSession, event_id: int) -> int | None:
    """The HTTP status of the event's latest send (None: no answer)."""
    return await session.scalar(
        select(WebhookAttempt.status_code)
        .where(WebhookAttempt.event_id == event_id)
        .order_by(WebhookAttempt.attempt.desc())
        .limit(1)
    )


async def newest_delivered_payment_event_id(
    session: AsyncSession, transaction_id: int, target_url: str
) -> int | None:
    """The transaction's latest payment webhook to ``target_url`` that was delivered."""
    event_id = await session.scalar(
        select(OutboxEvent.id)
        .where(
            OutboxEvent.transaction_id == transaction_id,
            OutboxEvent.kind == "payment",
            OutboxEvent.target_url == target_url,
            OutboxEvent.state == "delivered",
        )
        .order_by(OutboxEvent.id.desc())
        .limit(1)
    )
    return None if event_id is None else int(event_id)
