"""SQL for parent transactions, their attempts and their operations."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import Operation, PaymentAttempt, PaymentTransaction

RESERVING_STATES = ("processing", "queued", "needs_review")
# A Tracking-Key whose operation ended in one of these may be used again (decisions §6).
TRACKING_KEY_FREE_STATES = ("failed", "rejected")


async def find_parent(
    session: AsyncSession,
    *,
    order_no: str | None = None,
    session_id: str | None = None,
    for_update: bool = False,
    include_deleted: bool = False,
) -> PaymentTransaction | None:
    query = select(PaymentTransaction)
    if session_id is not None:
        query = query.where(PaymentTransaction.session_id == session_id)
    elif order_no is not None:
        query = query.where(PaymentTransaction.order_no == order_no)
    else:
        raise ValueError("order_no or session_id is required")
    if not include_deleted:
        query = query.where(PaymentTransaction.deleted_at.is_(None))
    if for_update:
        query = query.with_for_update()
    # populate_existing: a locked re-read must not be served from the identity map.
    return await session.scalar(query.execution_options(populate_existing=True))


async def lock_parent_by_id(session: AsyncSession, parent_id: int) -> PaymentTransaction:
    query = (
        select(PaymentTransaction)
        .where(PaymentTransaction.id == parent_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).one()


async def reservations(session: AsyncSession, parent_id: int) -> dict[str, int]:
    """Amounts held by operations whose outcome is not final, by operation."""
    rows = await session.execute(
        select(Operation.operation, func.count(), func.coalesce(func.sum(Operation.amount), 0))
        .where(Operation.transaction_id == parent_id, Operation.state.in_(RESERVING_STATES))
        .group_by(Operation.operation)
    )
    held = {"capture": 0, "refund": 0, "void": 0, "void_count": 0}
    for operation, count, total in rows:
        held[operation] = int(total)
        if operation == "void":
            held["void_count"] = int(count)
    return held


async def attempts(session: AsyncSession, parent_id: int) -> list[PaymentAttempt]:
    return list(
        await session.scalars(
            select(PaymentAttempt)
            .where(PaymentAttempt.transaction_id == parent_id)
            .order_by(PaymentAttempt.created_at.desc(), PaymentAttempt.id.desc())
        )
    )


# A session takes no new attempt while one of these exists (decisions §13): a charge in flight,
# a payment taken, or a confirmed amount that differs from the one asked and awaits an operator.
BLOCKING_ATTEMPT_STATES = ("pending", "success", "needs_review")


async def blocking_attempt(session: AsyncSession, parent_id: int) -> PaymentAttempt | None:
    return await session.scalar(
        select(PaymentAttempt)
        .where(PaymentAttempt.transaction_id == parent_id,
               PaymentAttempt.state.in_(BLOCKING_ATTEMPT_STATES))
        .order_by(PaymentAttempt.id.desc())
        .limit(1)
    )


async def attempt_in_review(session: AsyncSession, parent_id: int) -> bool:
    """Has the gateway confirmed another amount than an attempt asked for? Such a parent waits
    for an operator: it is not expired, canceled or charged again (decisions §13)."""
    return bool(await session.scalar(
        select(PaymentAttempt.id)
        .where(PaymentAttempt.transaction_id == parent_id, PaymentAttempt.state == "needs_review")
        .limit(1)
    ))


async def successful_attempt(
    session: AsyncSession, parent_id: int, gateway_config_id: int | None
) -> PaymentAttempt | None:
    """The attempt that took the payment at this gateway (the newest, should there be several)."""
    return await session.scalar(
        select(PaymentAttempt)
        .where(PaymentAttempt.transaction_id == parent_id,
               PaymentAttempt.state == "success",
               PaymentAttempt.gateway_config_id == gateway_config_id)
        .order_by(PaymentAttempt.id.desc())
    )


async def operations(session: AsyncSession, parent_id: int) -> list[Operation]:
    return list(
        await session.scalars(
            select(Operation)
            .where(Operation.transaction_id == parent_id)
            .order_by(Operation.created_at, Operation.id)
        )
    )


async def operation_by_tracking_key(
    session: AsyncSession, parent_id: int, tracking_key: str
) -> Operation | None:
    return await session.scalar(
        select(Operation)
        .where(
            Operation.transaction_id == parent_id,
            Operation.tracking_key == tracking_key,
            Operation.state.not_in(TRACKING_KEY_FREE_STATES),
        )
        .execution_options(populate_existing=True)
    )


async def lock_operation(session: AsyncSession, operation_id: int) -> Operation:
    query = (
        select(Operation)
        .where(Operation.id == operation_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(query)).one()
