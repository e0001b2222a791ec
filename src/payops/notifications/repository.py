"""SQL for incoming gateway notifications: what a notification may name, and what is still open."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import Operation, PaymentAttempt, PaymentTransaction

# How many of a gateway's most recent attempts and operations a notification is compared with
# when it names the payment only by the gateway's own ids (those live in JSON columns).
RECENT_LIMIT = 10_000


async def operation_parent(session: AsyncSession, gateway_id: int, reference: str) -> int | None:
    """The parent of this gateway's operation with PayOps reference ``reference``."""
    return await session.scalar(
        select(Operation.transaction_id).where(
            Operation.reference_number == reference, Operation.gateway_config_id == gateway_id
        )
    )


async def attempt_parent(session: AsyncSession, gateway_id: int, reference: str) -> int | None:
    """The parent of this gateway's payment attempt with PayOps reference ``reference``."""
    return await session.scalar(
        select(PaymentAttempt.transaction_id).where(
            PaymentAttempt.reference_number == reference,
            PaymentAttempt.gateway_config_id == gateway_id,
        )
    )


async def recent_attempt_refs(
    session: AsyncSession, gateway_id: int
) -> list[tuple[int, dict[str, Any] | None, str]]:
    """(parent id, gateway ids, reference) of this gateway's latest attempts, newest first."""
    rows = await session.execute(
        select(
            PaymentAttempt.transaction_id,
            PaymentAttempt.gateway_refs,
            PaymentAttempt.reference_number,
        )
        .where(PaymentAttempt.gateway_config_id == gateway_id)
        .order_by(PaymentAttempt.id.desc())
        .limit(RECENT_LIMIT)
    )
    return [(parent_id, refs, reference) for parent_id, refs, reference in rows]


async def recent_operation_refs(
    session: AsyncSession, gateway_id: int
) -> list[tuple[int, dict[str, Any] | None]]:
    """(parent id, gateway ids) of this gateway's latest operations, newest first."""
    rows = await session.execute(
        select(Operation.transaction_id, Operation.gateway_refs)
        .where(Operation.gateway_config_id == gateway_id)
        .order_by(Operation.id.desc())
        .limit(RECENT_LIMIT)
    )
    return [(parent_id, refs) for parent_id, refs in rows]


async def parent_state(session: AsyncSession, parent_id: int) -> str | None:
    parent = await session.get(PaymentTransaction, parent_id)
    return None if parent is None else parent.state


async def operation_ids_in(
    session: AsyncSession, parent_id: int, states: Collection[str]
) -> list[int]:
    """The parent's operations whose state is one of ``states``."""
    return list(
        await session.scalars(
            select(Operation.id).where(
                Operation.transaction_id == parent_id, Operation.state.in_(states)
            )
        )
    )
