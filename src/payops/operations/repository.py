"""SQL for operations on their own: the reconciler's candidates and leases, the review queue."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import Operation, PaymentTransaction
from payops.domain.states import OperationState


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Operation.claimed_until.is_(None), Operation.claimed_until <= now)


async def reconcile_candidates(
    session: AsyncSession, *, processing_before: datetime, now: datetime, limit: int
) -> list[int]:
    """Operations the reconciler may ask about, oldest first: ``processing`` ones created before
    ``processing_before`` and every ``queued`` one, whose lease is free."""
    rows = await session.scalars(
        select(Operation.id)
        .where(
            or_(
                and_(
                    Operation.state == OperationState.PROCESSING,
                    Operation.created_at <= processing_before,
                ),
                Operation.state == OperationState.QUEUED,
            ),
            _lease_free(now),
        )
        .order_by(Operation.created_at)
        .limit(limit)
    )
    return list(rows)


async def take_lease(
    session: AsyncSession,
    operation_id: int,
    *,
    states: Collection[str],
    now: datetime,
    until: datetime,
) -> bool:
    """Take the lease on one operation in one of ``states`` (a conditional UPDATE); False if
    another process holds it or the operation has left those states."""
    result = await session.execute(
        update(Operation)
        .where(Operation.id == operation_id, Operation.state.in_(states), _lease_free(now))
        .values(claimed_until=until)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def release_lease(session: AsyncSession, operation_id: int) -> None:
    await session.execute(
        update(Operation).where(Operation.id == operation_id).values(claimed_until=None)
    )


async def gateway_ids_of_others(
    session: AsyncSession, parent_id: int, operation_id: int
) -> frozenset[str]:
    """Every gateway id recorded on the parent's other operations."""
    others = await session.scalars(
        select(Operation.gateway_refs).where(
            Operation.transaction_id == parent_id, Operation.id != operation_id
        )
    )
    return frozenset(str(value) for refs in others for value in (refs or {}).values())


async def by_reference(session: AsyncSession, reference_number: str) -> Operation | None:
    return await session.scalar(
        select(Operation).where(Operation.reference_number == reference_number)
    )


async def in_review(
    session: AsyncSession, *, processing_before: datetime | None = None
) -> list[tuple[Operation, PaymentTransaction]]:
    """``needs_review`` operations with their parent, oldest first; with ``processing_before``
    also the ``processing`` ones created before then."""
    wanted = Operation.state == OperationState.NEEDS_REVIEW
    if processing_before is not None:
        wanted = or_(
            wanted,
            and_(
                Operation.state == OperationState.PROCESSING,
                Operation.created_at <= processing_before,
            ),
        )
    rows = await session.execute(
        select(Operation, PaymentTransaction)
        .join(PaymentTransaction, PaymentTransaction.id == Operation.transaction_id)
        .where(wanted)
        .order_by(Operation.created_at, Operation.id)
    )
    return [(op, parent) for op, parent in rows]


async def operations_in_states(
    session: AsyncSession, states: Sequence[str], limit: int
) -> list[tuple[Operation, PaymentTransaction]]:
    """Operations in ``states``, oldest first, each with its parent (`payops ops list`)."""
    rows = await session.execute(
        select(Operation, PaymentTransaction)
        .join(PaymentTransaction, PaymentTransaction.id == Operation.transaction_id)
        .where(Operation.state.in_(list(states)))
        .order_by(Operation.created_at)
        .limit(limit)
    )
    return [(row[0], row[1]) for row in rows]
