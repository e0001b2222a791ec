"""SQL for inquiry throttling: the recorded gateway inquiries and the lock admissions take."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import GatewayInquiry

# pg_advisory_xact_lock key serialising gateway-inquiry admissions (any 64-bit constant).
GLOBAL_INQUIRY_LOCK = 0x7061796F7073_01


async def take_global_turn(session: AsyncSession) -> None:
    """PostgreSQL: wait for the transaction-scoped lock that admissions take turns on (held to
    commit). SQLite write transactions take turns already."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": GLOBAL_INQUIRY_LOCK})


async def inquiries_since(
    session: AsyncSession, since: datetime, *, parent_id: int | None = None
) -> list[datetime]:
    """When gateway inquiries were made after ``since``: the parent's, or every parent's."""
    query = select(GatewayInquiry.at).where(GatewayInquiry.at > since)
    if parent_id is not None:
        query = query.where(GatewayInquiry.transaction_id == parent_id)
    return list(await session.scalars(query))


def record_inquiry(session: AsyncSession, parent_id: int, at: datetime) -> None:
    session.add(GatewayInquiry(transaction_id=parent_id, at=at))


DAY = timedelta(days=1)
MINUTE = timedelta(minutes=1)
