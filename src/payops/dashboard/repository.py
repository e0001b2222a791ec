"""SQL for the dashboard's pages: searches, lists (keyset pagination, newest first) and counters."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Select, and_, delete, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import (
    AuditEntry,
    DashboardSession,
    GatewayConfig,
    Operation,
    OutboxEvent,
    PaymentAttempt,
    PaymentTransaction,
    WebhookAttempt,
)

PAGE_SIZE = 50


@dataclass(frozen=True)
class TransactionFilter:
    """What the transactions list shows; every field optional. Dates are UTC days, inclusive."""

    query: str = ""
    state: str = ""
    gateway: str = ""
    currency: str = ""
    date_from: date | None = None
    date_to: date | None = None
    operation: str = ""
    operation_state: str = ""

    def as_params(self) -> dict[str, str]:
        params = {
            "q": self.query,
            "state": self.state,
            "gateway": self.gateway,
            "currency": self.currency,
            "from": self.date_from.isoformat() if self.date_from else "",
            "to": self.date_to.isoformat() if self.date_to else "",
            "operation": self.operation,
            "operation_state": self.operation_state,
        }
        return {k: v for k, v in params.items() if v}


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _search_condition(query: str) -> Any:
    """A customer email when it has an @; otherwise an order number, a session id or the
    reference number of an attempt or an operation (each a unique, indexed column)."""
    if "@" in query:
        email = PaymentTransaction.customer["customer_email"].as_string()
        return func.lower(email) == query.lower()
    return or_(
        PaymentTransaction.order_no == query,
        PaymentTransaction.session_id == query,
        PaymentTransaction.id.in_(
            select(PaymentAttempt.transaction_id).where(PaymentAttempt.reference_number == query)
        ),
        PaymentTransaction.id.in_(
            select(Operation.transaction_id).where(Operation.reference_number == query)
        ),
    )


def transactions_query(flt: TransactionFilter) -> Select[PaymentTransaction]:
    query = select(PaymentTransaction).where(PaymentTransaction.deleted_at.is_(None))
    if flt.query:
        query = query.where(_search_condition(flt.query))
    if flt.state:
        query = query.where(PaymentTransaction.state == flt.state)
    if flt.gateway:
        query = query.where(
            PaymentTransaction.gateway_config_id.in_(
                select(GatewayConfig.id).where(GatewayConfig.pg_code == flt.gateway)
            )
        )
    if flt.currency:
        query = query.where(PaymentTransaction.currency_code == flt.currency)
    if flt.date_from:
        query = query.where(PaymentTransaction.created_at >= day_start(flt.date_from))
    if flt.date_to:
        day_after = day_start(flt.date_to + timedelta(days=1))
        query = query.where(PaymentTransaction.created_at < day_after)
    if flt.operation:
        condition = [
            Operation.transaction_id == PaymentTransaction.id,
            Operation.operation == flt.operation,
        ]
        if flt.operation_state:
            condition.append(Operation.state == flt.operation_state)
        if flt.date_from:
            condition.append(Operation.created_at >= day_start(flt.date_from))
        query = query.where(exists().where(and_(*condition)))
    return query


async def transactions_page(
    session: AsyncSession, flt: TransactionFilter, before_id: int | None, limit: int = PAGE_SIZE
) -> tuple[list[PaymentTransaction], int | None]:
    """One page, newest first, and the cursor of the next page (None on the last)."""
    query = transactions_query(flt)
    if before_id is not None:
        query = query.where(PaymentTransaction.id < before_id)
    rows = list(
        await session.scalars(query.order_by(PaymentTransaction.id.desc()).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def gateways(session: AsyncSession) -> list[GatewayConfig]:
    return list(await session.scalars(select(GatewayConfig).order_by(GatewayConfig.pg_code)))


async def parent_by_session_id(session: AsyncSession, session_id: str) -> PaymentTransaction | None:
    return await session.scalar(
        select(PaymentTransaction).where(PaymentTransaction.session_id == session_id)
    )


async def events_of(session: AsyncSession, parent_id: int) -> list[OutboxEvent]:
    return list(
        await session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.transaction_id == parent_id)
            .order_by(OutboxEvent.id)
        )
    )


async def audit_of(session: AsyncSession, parent_id: int) -> list[AuditEntry]:
    return list(
        await session.scalars(
            select(AuditEntry).where(AuditEntry.transaction_id == parent_id).order_by(AuditEntry.id)
        )
    )


async def operation_by_reference(session: AsyncSession, reference: str) -> Operation | None:
    return await session.scalar(select(Operation).where(Operation.reference_number == reference))


# -- counters ---------------------------------------------------------------------------------


@dataclass
class Counters:
    payments: dict[str, int] = field(default_factory=dict)
    operations: dict[tuple[str, str], int] = field(default_factory=dict)


async def counters_since(session: AsyncSession, since: datetime) -> Counters:
    counters = Counters()
    rows = await session.execute(
        select(PaymentTransaction.state, func.count())
        .where(PaymentTransaction.created_at >= since, PaymentTransaction.deleted_at.is_(None))
        .group_by(PaymentTransaction.state)
    )
    counters.payments = {state: int(count) for state, count in rows}
    operation_rows = await session.execute(
        select(Operation.operation, Operation.state, func.count())
        .where(Operation.created_at >= since)
        .group_by(Operation.operation, Operation.state)
    )
    counters.operations = {(op, state): int(count) for op, state, count in operation_rows}
    return counters


async def count_operations_in(session: AsyncSession, states: tuple[str, ...]) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(Operation).where(Operation.state.in_(states))
        )
        or 0
    )


async def count_events(session: AsyncSession, state: str) -> int:
    return int(
        await session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.state == state)
        )
        or 0
    )


async def operations_per_day(session: AsyncSession, days: list[date]) -> list[int]:
    """How many operations were created on each day (one indexed range count per day)."""
    counts = []
    for day in days:
        counts.append(
            int(
                await session.scalar(
                    select(func.count())
                    .select_from(Operation)
                    .where(
                        Operation.created_at >= day_start(day),
                        Operation.created_at < day_start(day + timedelta(days=1)),
                    )
                )
                or 0
            )
        )
    return counts


# -- webhooks and audit -----------------------------------------------------------------------


async def events_page(
    session: AsyncSession, state: str, before_id: int | None, limit: int = PAGE_SIZE
) -> tuple[list[OutboxEvent], int | None]:
    query = select(OutboxEvent)
    if state:
        query = query.where(OutboxEvent.state == state)
    if before_id is not None:
        query = query.where(OutboxEvent.id < before_id)
    rows = list(await session.scalars(query.order_by(OutboxEvent.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def attempts_of_event(session: AsyncSession, event_id: int) -> list[WebhookAttempt]:
    return list(
        await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.event_id == event_id)
            .order_by(WebhookAttempt.attempt, WebhookAttempt.id)
        )
    )


async def audit_page(
    session: AsyncSession,
    actor: str,
    action: str,
    before_id: int | None,
    limit: int = PAGE_SIZE,
) -> tuple[list[AuditEntry], int | None]:
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    rows = list(await session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


async def parents_by_ids(session: AsyncSession, ids: set[int]) -> dict[int, PaymentTransaction]:
    if not ids:
        return {}
    rows = await session.scalars(select(PaymentTransaction).where(PaymentTransaction.id.in_(ids)))
    return {row.id: row for row in rows}


async def event(session: AsyncSession, event_id: int) -> OutboxEvent | None:
    return await session.get(OutboxEvent, event_id)


async def delete_expired_sessions(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(DashboardSession).where(DashboardSession.expires_at <= now))


async def delete_session(session: AsyncSession, token_hash: str) -> None:
    await session.execute(delete(DashboardSession).where(DashboardSession.token_hash == token_hash))
