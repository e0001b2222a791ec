"""SQL for the automatic inquiry of payment attempts and their operator review."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Exists, and_, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import PaymentAttempt, PaymentTransaction
from payops.domain.states import AttemptState

# How many times PayOps asks a gateway on its own about an attempt still pending. After that the
# attempt stays pending and is listed for an operator (issue 17).
MAX_AUTOMATIC_INQUIRIES = 3


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(
        PaymentAttempt.inquiry_claimed_until.is_(None), PaymentAttempt.inquiry_claimed_until <= now
    )


async def inquiry_candidates(
    session: AsyncSession, now: datetime, limit: int
) -> list[PaymentAttempt]:
    """Pending attempts with automatic inquiries left, whose next inquiry time has come (or is
    still to be worked out from their configuration's window), not held by another worker;
    oldest first."""
    return list(
        await session.scalars(
            select(PaymentAttempt)
            .where(
                PaymentAttempt.state == "pending",
                PaymentAttempt.inquiry_count < MAX_AUTOMATIC_INQUIRIES,
                or_(
                    PaymentAttempt.next_inquiry_at.is_(None), PaymentAttempt.next_inquiry_at <= now
                ),
                _lease_free(now),
            )
            .order_by(PaymentAttempt.id)
            .limit(limit)
        )
    )


async def claim_inquiry(
    session: AsyncSession,
    attempt_id: int,
    *,
    seen_count: int,
    now: datetime,
    lease_until: datetime,
    next_at: datetime,
    count_to: int,
) -> bool:
    """Take one automatic inquiry of a pending attempt: a conditional UPDATE that only one caller
    (in any process) wins. The count is spent when claimed, so a crash mid-call never buys an
    attempt a fourth inquiry."""
    result = await session.execute(
        update(PaymentAttempt)
        .where(
            PaymentAttempt.id == attempt_id,
            PaymentAttempt.state == "pending",
            PaymentAttempt.inquiry_count == seen_count,
            _lease_free(now),
        )
        .values(inquiry_count=count_to, inquiry_claimed_until=lease_until, next_inquiry_at=next_at)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def claim_recheck(
    session: AsyncSession,
    attempt_id: int,
    *,
    states: tuple[str, ...],
    now: datetime,
    lease_until: datetime,
) -> bool:
    """The same lease for an operator's recheck: never asked twice at once."""
    result = await session.execute(
        update(PaymentAttempt)
        .where(PaymentAttempt.id == attempt_id, PaymentAttempt.state.in_(states), _lease_free(now))
        .values(inquiry_claimed_until=lease_until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def release(session: AsyncSession, attempt_id: int) -> None:
    await session.execute(
        update(PaymentAttempt)
        .where(PaymentAttempt.id == attempt_id)
        .values(inquiry_claimed_until=None)
        .execution_options(synchronize_session=False)
    )


def in_review() -> ColumnElement[bool]:
    """An attempt an operator must decide on: the gateway confirmed another amount or currency
    (needs_review), it gave no final answer to every automatic inquiry (still pending), or it
    was paid with a reason to look (``review_reason``, e.g. a duplicate payment); and nobody has
    resolved it yet."""
    return and_(
        PaymentAttempt.resolution.is_(None),
        or_(
            PaymentAttempt.state == "needs_review",
            and_(
                PaymentAttempt.state == "pending",
                PaymentAttempt.inquiry_count >= MAX_AUTOMATIC_INQUIRIES,
            ),
            and_(PaymentAttempt.state == "success", PaymentAttempt.review_reason != ""),
        ),
    )


async def review_queue(session: AsyncSession) -> list[tuple[PaymentAttempt, PaymentTransaction]]:
    rows = await session.execute(
        select(PaymentAttempt, PaymentTransaction)
        .join(PaymentTransaction, PaymentTransaction.id == PaymentAttempt.transaction_id)
        .where(
            in_review(),
            PaymentAttempt.state.in_(("needs_review", "pending", "success")),
            PaymentTransaction.deleted_at.is_(None),
        )
        .order_by(PaymentAttempt.created_at, PaymentAttempt.id)
    )
    return [(attempt, parent) for attempt, parent in rows]


async def by_reference(session: AsyncSession, reference_number: str) -> PaymentAttempt | None:
    return await session.scalar(
        select(PaymentAttempt)
        .where(PaymentAttempt.reference_number == reference_number)
        .execution_options(populate_existing=True)
    )


async def lock(session: AsyncSession, attempt_id: int) -> PaymentAttempt:
    """Lock an attempt (after its parent: the lock order everywhere is parent, then child)."""
    return (
        await session.scalars(
            select(PaymentAttempt)
            .where(PaymentAttempt.id == attempt_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    ).one()


def awaiting_automatic_inquiry(now: datetime) -> Exists:
    """A parent whose pending attempt still has automatic inquiries to come, or one in flight:
    it does not expire before the gateway has been asked (issue 17)."""
    return exists().where(PaymentAttempt.transaction_id == PaymentTransaction.id, _awaiting(now))


def _awaiting(now: datetime) -> ColumnElement[bool]:
    return and_(
        PaymentAttempt.state == "pending",
        or_(
            PaymentAttempt.inquiry_count < MAX_AUTOMATIC_INQUIRIES,
            PaymentAttempt.inquiry_claimed_until > now,
        ),
    )


async def has_attempt_awaiting_inquiry(
    session: AsyncSession, parent_id: int, now: datetime
) -> bool:
    return bool(
        await session.scalar(
            select(PaymentAttempt.id)
            .where(PaymentAttempt.transaction_id == parent_id, _awaiting(now))
            .limit(1)
        )
    )


async def parents_due_for_expiry(
    session: AsyncSession, expirable: Sequence[str], now: datetime, limit: int
) -> list[int]:
    """Live sessions past their expiration_time that may expire now: none of their attempts is
    in review, and none is still waiting for an automatic inquiry (transactions/expiry.py)."""
    in_review = exists().where(
        PaymentAttempt.transaction_id == PaymentTransaction.id,
        PaymentAttempt.state == AttemptState.NEEDS_REVIEW,
    )
    return list(
        await session.scalars(
            select(PaymentTransaction.id)
            .where(
                PaymentTransaction.state.in_(list(expirable)),
                PaymentTransaction.expires_at <= now,
                PaymentTransaction.deleted_at.is_(None),
                ~in_review,
                ~awaiting_automatic_inquiry(now),
            )
            .limit(limit)
        )
    )
