"""SQL for parent transactions, their attempts and their operations."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from payops.db.models import GatewayConfig, Operation, PaymentAttempt, PaymentTransaction
from payops.domain.states import ATTEMPT_BLOCKING, RESERVING, WITHOUT_EFFECT
from payops.webhooks.outbox import settings_version

RESERVING_STATES = RESERVING
# A Tracking-Key whose operation ended in one of these may be used again (decisions §6).
TRACKING_KEY_FREE_STATES = WITHOUT_EFFECT


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
BLOCKING_ATTEMPT_STATES = ATTEMPT_BLOCKING


async def blocking_attempt(session: AsyncSession, parent_id: int) -> PaymentAttempt | None:
    return await session.scalar(
        select(PaymentAttempt)
        .where(
            PaymentAttempt.transaction_id == parent_id,
            PaymentAttempt.state.in_(BLOCKING_ATTEMPT_STATES),
        )
        .order_by(PaymentAttempt.id.desc())
        .limit(1)
    )


async def attempt_by_token(
    session: AsyncSession, token: str, *, for_update: bool = False
) -> PaymentAttempt | None:
    """The attempt PayOps's return/response/receipt URL names (issue 17)."""
    query = select(PaymentAttempt).where(PaymentAttempt.token == token)
    if for_update:
        query = query.with_for_update().execution_options(populate_existing=True)
    return await session.scalar(query)


async def attempt_in_review(session: AsyncSession, parent_id: int) -> bool:
    """Has the gateway confirmed another amount than an attempt asked for? Such a parent waits
    for an operator: it is not expired, canceled or charged again (decisions §13)."""
    return bool(
        await session.scalar(
            select(PaymentAttempt.id)
            .where(
                PaymentAttempt.transaction_id == parent_id, PaymentAttempt.state == "needs_review"
            )
            .limit(1)
        )
    )


async def successful_attempt(
    session: AsyncSession, parent_id: int, gateway_config_id: int | None
) -> PaymentAttempt | None:
    """The attempt that took the payment at this gateway (the newest, should there be several)."""
    return await session.scalar(
        select(PaymentAttempt)
        .where(
            PaymentAttempt.transaction_id == parent_id,
            PaymentAttempt.state == "success",
            PaymentAttempt.gateway_config_id == gateway_config_id,
        )
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


# -- the operation path: few statements, no relationship loading (issue 11) ---------------------
# The statements are built once (bound parameters): constructing them cost more than compiling.


@cache
def _lock_parent_statement(by: str) -> Any:
    gateway_version = (
        select(GatewayConfig.version)
        .where(GatewayConfig.id == PaymentTransaction.gateway_config_id)
        .correlate(PaymentTransaction)
        .scalar_subquery()
    )
    query = select(PaymentTransaction, gateway_version, settings_version()).options(
        raiseload(PaymentTransaction.gateway_config)
    )
    column = {
        "parent_id": PaymentTransaction.id,
        "session_id": PaymentTransaction.session_id,
        "order_no": PaymentTransaction.order_no,
    }[by]
    query = query.where(column == bindparam("key"))
    if by != "parent_id":
        query = query.where(PaymentTransaction.deleted_at.is_(None))
    return query.with_for_update(of=PaymentTransaction).execution_options(populate_existing=True)


async def lock_parent_for_operation(
    session: AsyncSession,
    *,
    parent_id: int | None = None,
    order_no: str | None = None,
    session_id: str | None = None,
) -> tuple[PaymentTransaction, int | None, int] | None:
    """Lock the parent (by id, or a live one by session_id / order_no) and read, in the same
    statement, the versions of its gateway configuration and of the merchant settings, so the
    process's caches can be checked without a statement of their own. The relationship to the
    configuration is not loaded: the caller takes it from the cache."""
    if parent_id is not None:
        by, key = "parent_id", parent_id
    elif session_id is not None:
        by, key = "session_id", session_id
    elif order_no is not None:
        by, key = "order_no", order_no
    else:
        raise ValueError("order_no or session_id is required")
    row = (await session.execute(_lock_parent_statement(by), {"key": key})).first()
    if row is None:
        return None
    parent, gateway_version, merchant_version = row
    return parent, gateway_version, int(merchant_version)


def _held(operation: str, *, count: bool = False) -> Any:
    measure = func.count() if count else func.coalesce(func.sum(Operation.amount), 0)
    return (
        select(measure)
        .where(
            Operation.transaction_id == PaymentAttempt.transaction_id,
            Operation.state.in_(RESERVING_STATES),
            Operation.operation == operation,
        )
        .correlate(PaymentAttempt)
        .scalar_subquery()
    )


@cache
def _attempt_and_reservations_statement() -> Any:
    return (
        select(
            PaymentAttempt,
            _held("capture"),
            _held("refund"),
            _held("void"),
            _held("void", count=True),
        )
        .options(raiseload(PaymentAttempt.gateway_config))
        .where(
            PaymentAttempt.transaction_id == bindparam("parent_id"),
            PaymentAttempt.state == "success",
            PaymentAttempt.gateway_config_id == bindparam("gateway_config_id"),
        )
        .order_by(PaymentAttempt.id.desc())
        .limit(1)
    )


async def successful_attempt_and_reservations(
    session: AsyncSession, parent_id: int, gateway_config_id: int | None
) -> tuple[PaymentAttempt | None, dict[str, int]]:
    """``successful_attempt`` and ``reservations`` in one statement. Run it after the parent is
    locked: on PostgreSQL the statement's snapshot then includes every operation committed by
    the previous holder of the lock."""
    if gateway_config_id is None:
        return None, {"capture": 0, "refund": 0, "void": 0, "void_count": 0}
    row = (
        await session.execute(
            _attempt_and_reservations_statement(),
            {"parent_id": parent_id, "gateway_config_id": gateway_config_id},
        )
    ).first()
    if row is None:
        return None, {"capture": 0, "refund": 0, "void": 0, "void_count": 0}
    attempt, capture, refund, void, void_count = row
    return attempt, {
        "capture": int(capture),
        "refund": int(refund),
        "void": int(void),
        "void_count": int(void_count),
    }


@cache
def _lock_operation_statement() -> Any:
    return (
        select(Operation)
        .options(raiseload(Operation.gateway_config))
        .where(Operation.id == bindparam("operation_id"))
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_operation_row(session: AsyncSession, operation_id: int) -> Operation:
    """``lock_operation`` without loading its gateway configuration."""
    return (
        await session.scalars(_lock_operation_statement(), {"operation_id": operation_id})
    ).one()


async def operation_parent_id(session: AsyncSession, operation_id: int) -> int:
    return (
        await session.scalars(select(Operation.transaction_id).where(Operation.id == operation_id))
    ).one()
