"""SQL for parent transactions, their attempts and their operations."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import raiseload

from payops.db.direct import DirectConnection
from payops.db.models import (
    AuditEntry,
    GatewayConfig,
    MerchantSetting,
    Operation,
    OutboxEvent,
    PaymentAttempt,
    PaymentTransaction,
)
from payops.domain.states import ATTEMPT_BLOCKING, RESERVING, WITHOUT_EFFECT
from payops.webhooks.outbox import settings_version

RESERVING_STATES = RESERVING
# What a parent without open operations holds, by operation (and the number of voids).
NO_RESERVATIONS = {"capture": 0, "refund": 0, "void": 0, "void_count": 0}
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
    held = dict(NO_RESERVATIONS)
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
    key: int | str
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


# -- the operation path in Core: explicit columns, no unit of work (issue 11) ------------------
# Rows, not ORM objects: nothing is tracked, flushed or refreshed. A refund's intent is three
# statements on PostgreSQL (lock the parent with the cache versions, the attempt with the
# reservations, insert the operation with its audit entry) and its settlement two (lock the
# parent, one statement that writes the operation, the parent's total, the audit entry and the
# outbox events). SQLite has no data-modifying CTEs, so there each write is a statement.

_parents = cast(Table, PaymentTransaction.__table__)
_operations = cast(Table, Operation.__table__)
_attempts = cast(Table, PaymentAttempt.__table__)
_audit = cast(Table, AuditEntry.__table__)
_outbox = cast(Table, OutboxEvent.__table__)

# Rendered into the statement (constants): an expanding IN parameter is re-rendered on every
# execution, which cost more than the rest of the statement's preparation.
_RESERVING_LITERALS: tuple[Any, ...] = tuple(
    literal_column(f"'{state}'") for state in RESERVING_STATES
)


def _held(operation: str, transaction_id: Any, correlate: Table, *, count: bool = False) -> Any:
    """What the parent's open operations of one kind hold (their sum, or their number), as a
    scalar subquery correlated with ``correlate`` through its ``transaction_id`` column."""
    measure = func.count() if count else func.coalesce(func.sum(_operations.c.amount), 0)
    return (
        select(measure)
        .where(
            _operations.c.transaction_id == transaction_id,
            _operations.c.state.in_(_RESERVING_LITERALS),
            _operations.c.operation == operation,
        )
        .correlate(correlate)
        .scalar_subquery()
    )


def _held_columns(transaction_id: Any, correlate: Table) -> tuple[Any, ...]:
    return (
        _held("capture", transaction_id, correlate).label("held_capture"),
        _held("refund", transaction_id, correlate).label("held_refund"),
        _held("void", transaction_id, correlate).label("held_void"),
        _held("void", transaction_id, correlate, count=True).label("void_count"),
    )


def _reservations_of(row: Any) -> dict[str, int]:
    return {
        "capture": int(row.held_capture),
        "refund": int(row.held_refund),
        "void": int(row.held_void),
        "void_count": int(row.void_count),
    }


# What the operation path reads of a parent (rules, presenter, audit, webhooks).
PARENT_ROW_COLUMNS = (
    "id",
    "session_id",
    "order_no",
    "state",
    "currency_code",
    "operation_mode",
    "amount",
    "fee",
    "captured",
    "refunded",
    "voided",
    "gateway_config_id",
    "webhook_url",
    "extra",
)


@cache
def _parent_row_statement(by: str) -> Any:
    gateways = cast(Table, GatewayConfig.__table__)
    gateway_version = (
        select(gateways.c.version)
        .where(gateways.c.id == _parents.c.gateway_config_id)
        .correlate(_parents)
        .scalar_subquery()
    )
    settings = cast(Table, MerchantSetting.__table__)
    merchant_version = select(func.coalesce(func.sum(settings.c.version), 0)).scalar_subquery()
    column = {
        "parent_id": _parents.c.id,
        "session_id": _parents.c.session_id,
        "order_no": _parents.c.order_no,
    }[by]
    query = select(
        *(_parents.c[name] for name in PARENT_ROW_COLUMNS),
        gateway_version.label("gateway_version"),
        merchant_version.label("settings_version"),
    ).where(column == bindparam("key"))
    if by != "parent_id":
        query = query.where(_parents.c.deleted_at.is_(None))
    return query.with_for_update(of=_parents)


async def lock_parent_row(
    conn: DirectConnection,
    *,
    parent_id: int | None = None,
    order_no: str | None = None,
    session_id: str | None = None,
) -> Any:
    """``lock_parent_for_operation`` as a row (``PARENT_ROW_COLUMNS`` and ``gateway_version``,
    ``settings_version``), or None."""
    key: int | str
    if parent_id is not None:
        by, key = "parent_id", parent_id
    elif session_id is not None:
        by, key = "session_id", session_id
    elif order_no is not None:
        by, key = "order_no", order_no
    else:
        raise ValueError("order_no or session_id is required")
    return await conn.first(_parent_row_statement(by), {"key": key})


@cache
def _attempt_row_and_reservations_statement() -> Any:
    return (
        select(
            _attempts.c.reference_number,
            _attempts.c.amount,
            _attempts.c.currency_code,
            _attempts.c.operation_mode,
            _attempts.c.gateway_refs,
            *_held_columns(_attempts.c.transaction_id, _attempts),
        )
        .where(
            _attempts.c.transaction_id == bindparam("parent_id"),
            _attempts.c.state == "success",
            _attempts.c.gateway_config_id == bindparam("gateway_config_id"),
        )
        .order_by(_attempts.c.id.desc())
        .limit(1)
    )


async def successful_attempt_row_and_reservations(
    conn: DirectConnection, parent_id: int, gateway_config_id: int | None
) -> tuple[Any, dict[str, int]]:
    """``successful_attempt_and_reservations`` as a row (what ``payment_ref`` reads). Run it
    after the parent is locked (its snapshot must include the previous lock holder's writes)."""
    if gateway_config_id is None:
        return None, dict(NO_RESERVATIONS)
    row = await conn.first(
        _attempt_row_and_reservations_statement(),
        {"parent_id": parent_id, "gateway_config_id": gateway_config_id},
    )
    if row is None:
        return None, dict(NO_RESERVATIONS)
    return row, _reservations_of(row)


class AttemptRow(NamedTuple):
    """What ``payment_ref`` reads of the successful attempt."""

    reference_number: str
    amount: int
    currency_code: str
    operation_mode: str
    gateway_refs: dict[str, Any] | None


@cache
def _parent_and_attempt_statement(by: str) -> Any:
    latest = (
        select(func.max(_attempts.c.id))
        .where(
            _attempts.c.transaction_id == _parents.c.id,
            _attempts.c.state == "success",
            _attempts.c.gateway_config_id == _parents.c.gateway_config_id,
        )
        .correlate(_parents)
        .scalar_subquery()
    )

    parent = _parent_row_statement(by)
    return parent.add_columns(
        _attempts.c.id.label("attempt_id"),
        *(_attempts.c[name].label(f"attempt_{name}") for name in AttemptRow._fields),
        *_held_columns(_parents.c.id, _parents),
    ).select_from(_parents.outerjoin(_attempts, _attempts.c.id == latest))


async def lock_parent_row_with_attempt(
    conn: DirectConnection, *, order_no: str | None = None, session_id: str | None = None
) -> tuple[Any, AttemptRow | None, dict[str, int]] | None:
    """``lock_parent_row`` and ``successful_attempt_row_and_reservations`` in one statement,
    for SQLite only: there the write transaction holds the database's lock from its BEGIN, so a
    read sees every write committed before it. (On PostgreSQL the reservations must be read by a
    statement that starts after the parent's lock is taken.)"""
    if session_id is not None:
        by, key = "session_id", session_id
    elif order_no is not None:
        by, key = "order_no", order_no
    else:
        raise ValueError("order_no or session_id is required")
    row = await conn.first(_parent_and_attempt_statement(by), {"key": key})
    if row is None:
        return None
    attempt = (
        AttemptRow(*(getattr(row, f"attempt_{name}") for name in AttemptRow._fields))
        if row.attempt_id is not None
        else None
    )
    return row, attempt, _reservations_of(row)


# Bound parameters of the operation path's writes, by table (prefixed, as PostgreSQL runs them
# in one statement).
_INTENT_OPERATION_FIELDS = (
    "transaction_id",
    "gateway_config_id",
    "operation",
    "state",
    "amount",
    "currency_code",
    "reference_number",
    "child_session_id",
    "tracking_key",
    "request_fingerprint",
    "source",
    "initiator",
    "claimed_until",
    "created_at",
    "updated_at",
    "pg_response",
    "pg_params",
    "gateway_refs",
    "message",
    "reconcile_attempts",
)
_AUDIT_FIELDS = (
    "at",
    "actor_type",
    "actor",
    "action",
    "transaction_id",
    "session_id",
    "order_no",
    "result",
    "details",
)
_OUTBOX_FIELDS = (
    "event_id",
    "kind",
    "target_url",
    "payload",
    "transaction_id",
    "state",
    "attempts",
    "next_attempt_at",
    "last_error",
    "created_at",
)


def _audit_insert(prefix: str) -> Any:
    return insert(_audit).values({name: bindparam(f"{prefix}{name}") for name in _AUDIT_FIELDS})


def audit_values(
    prefix: str,
    *,
    actor_type: str,
    actor: str,
    action: str,
    result: str,
    parent: Any,
    at: datetime,
    details: dict[str, Any],
) -> dict[str, Any]:
    """An audit entry's bound parameters (what ``audit.record`` writes) for the statements here."""
    return {
        f"{prefix}at": at,
        f"{prefix}actor_type": actor_type,
        f"{prefix}actor": actor,
        f"{prefix}action": action,
        f"{prefix}transaction_id": parent.id,
        f"{prefix}session_id": parent.session_id,
        f"{prefix}order_no": parent.order_no or "",
        f"{prefix}result": result,
        f"{prefix}details": details,
    }


@cache
def _intent_statements(postgresql: bool) -> tuple[Any, ...]:
    operation = (
        insert(_operations)
        .values({name: bindparam(f"op_{name}") for name in _INTENT_OPERATION_FIELDS})
        .returning(_operations.c.id)
    )
    if postgresql:
        return (operation.add_cte(_audit_insert("audit_").cte("intent_audit")),)
    return operation, _audit_insert("audit_")


async def insert_intent(
    conn: DirectConnection,
    operation: dict[str, Any],
    audit_entry: dict[str, Any],
    *,
    last: bool = False,
) -> int:
    """Insert the operation (``_INTENT_OPERATION_FIELDS``; a new operation's empty columns are
    filled here) and its audit entry (``audit_values`` with the prefix ``audit_``); returns the
    operation's id. Every column is given: no Python-side default runs inside a CTE. ``last``: the
    transaction writes nothing after it (DirectConnection.chain)."""
    operation = {
        "pg_response": {},
        "pg_params": {},
        "gateway_refs": {},
        "message": "",
        "reconcile_attempts": 0,
        **operation,
    }
    params = {f"op_{name}": operation[name] for name in _INTENT_OPERATION_FIELDS}
    params.update(audit_entry)
    statements = _intent_statements(conn.postgresql)
    inserted = await conn.chain(statements[0], statements[1:], params, returning=True, last=last)
    return int(inserted[0])


_SETTLED_FIELDS = (
    "state",
    "pg_response",
    "pg_params",
    "gateway_refs",
    "message",
    "claimed_until",
    "settled_at",
    "queued_at",
    "updated_at",
)


def _typed(table: Table, column: str, name: str) -> Any:
    return bindparam(name, type_=table.c[column].type)


@cache
def _settle_statements(
    postgresql: bool, total: str | None, with_response: bool, targets: int
) -> tuple[Any, ...]:
    fields = _SETTLED_FIELDS + (("response",) if with_response else ())
    gateways = cast(Table, GatewayConfig.__table__)
    settings = cast(Table, MerchantSetting.__table__)
    gateway_version = (
        select(gateways.c.version).where(gateways.c.id == bindparam("gateway_id")).scalar_subquery()
    )
    settings_version = select(func.coalesce(func.sum(settings.c.version), 0)).scalar_subquery()
    # Untouched since its intent, and the caches' versions the answer was built with are still
    # the database's.
    conditions = (
        _operations.c.id == bindparam("op_id"),
        _operations.c.state == "processing",
        _operations.c.updated_at == bindparam("op_stamp"),
        gateway_version == bindparam("gateway_version"),
        settings_version == bindparam("settings_version"),
    )
    values: dict[str, Any] = {name: bindparam(f"op_{name}") for name in fields}
    if not postgresql:  # statements of one write transaction (SQLite: the database's lock)
        writes: list[Any] = [update(_operations).where(*conditions).values(values)]
        if total is not None:
            writes.append(
                update(_parents)
                .where(_parents.c.id == bindparam("parent_id"))
                .values(
                    {
                        total: _parents.c[total] + bindparam("parent_amount"),
                        "updated_at": bindparam("parent_updated_at"),
                    }
                )
            )
        writes.append(_audit_insert("audit_"))
        for index in range(targets):
            writes.append(
                insert(_outbox).values(
                    {name: bindparam(f"outbox{index}_{name}") for name in _OUTBOX_FIELDS}
                )
            )
        return tuple(writes)

    # PostgreSQL: one statement, on its own (autocommit). It locks the parent first (lock order
    # everywhere: parent, then operation): the operation's UPDATE reads the locked CTE in its
    # condition, so the parent's lock is taken before the operation's row is; every other write
    # reads the settled CTE, so they happen only when the operation was settled here.
    locked = (
        select(_parents.c.id)
        .where(_parents.c.id == bindparam("parent_id"))
        .with_for_update()
        .cte("locked")
    )
    settled = (
        update(_operations)
        .where(*conditions, select(locked.c.id).exists())
        .values(values)
        .returning(_operations.c.id)
        .cte("settled")
    )
    done = select(settled.c.id).exists()
    statement = select(func.count()).select_from(settled)
    if total is not None:
        statement = statement.add_cte(
            update(_parents)
            .where(_parents.c.id == bindparam("parent_id"), done)
            .values(
                {
                    total: _parents.c[total] + bindparam("parent_amount"),
                    "updated_at": bindparam("parent_updated_at"),
                }
            )
            .cte("settled_parent")
        )
    statement = statement.add_cte(
        insert(_audit)
        .from_select(
            list(_AUDIT_FIELDS),
            select(*(_typed(_audit, name, f"audit_{name}") for name in _AUDIT_FIELDS)).where(done),
        )
        .cte("settled_audit")
    )
    for index in range(targets):
        statement = statement.add_cte(
            insert(_outbox)
            .from_select(
                list(_OUTBOX_FIELDS),
                select(
                    *(_typed(_outbox, name, f"outbox{index}_{name}") for name in _OUTBOX_FIELDS)
                ).where(done),
            )
            .cte(f"settled_event{index}")
        )
    return (statement,)


class SettleConflict(Exception):
    """The operation changed since its intent was written, or a cache version the answer was
    built with did: settle it the general way."""


async def settle_fresh_operation(
    conn: DirectConnection,
    *,
    operation_id: int,
    stamp: datetime,
    values: dict[str, Any],
    parent_id: int,
    total: str | None,
    amount: int,
    audit_entry: dict[str, Any],
    events: list[dict[str, Any]],
    gateway_id: int,
    gateway_version: int | None,
    settings_version: int,
) -> None:
    """Write the gateway's answer for an operation nobody has touched since its intent (its
    ``updated_at`` is still ``stamp`` and it is processing): the operation's new columns
    (``_SETTLED_FIELDS``, and ``response`` when given), ``amount`` added to the parent's
    ``total`` column (captured / refunded / voided, or None), the audit entry (prefix
    ``audit_``) and one outbox event per entry of ``events``.

    Each checks that ``gateway_version`` and ``settings_version`` (what the answer was built
    with) are current. PostgreSQL: one statement on a connection in autocommit
    (``Database.direct_alone``), which also takes the parent's lock. SQLite: a statement per
    write, chained (``DirectConnection.chain``: the others only when the operation's UPDATE
    took) in a write transaction (which holds the database's lock). Raises ``SettleConflict``
    when the operation was touched or a version moved (nothing is written: the operation's
    UPDATE comes first)."""
    with_response = "response" in values
    params: dict[str, Any] = {
        "op_id": operation_id,
        "op_stamp": stamp,
        "parent_id": parent_id,
        "parent_amount": amount,
        "parent_updated_at": values["updated_at"],
        "gateway_id": gateway_id,
        "gateway_version": gateway_version,
        "settings_version": settings_version,
    }
    params.update({f"op_{name}": value for name, value in values.items()})
    params.update(audit_entry)
    for index, event in enumerate(events):
        event = {
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": values["updated_at"],
            "last_error": "",
            "created_at": values["updated_at"],
            **event,
        }
        params.update({f"outbox{index}_{name}": event[name] for name in _OUTBOX_FIELDS})
    statements = _settle_statements(conn.postgresql, total, with_response, len(events))
    if conn.postgresql:
        if await conn.scalar(statements[0], params) != 1:
            raise SettleConflict()
        return
    # The other writes run only when the operation's UPDATE changed its row.
    if await conn.chain(statements[0], statements[1:], params, returning=False, last=True) != 1:
        raise SettleConflict()


_LIVE_TRACKING_KEY = (
    select(_operations.c.id)
    .where(
        _operations.c.transaction_id == bindparam("parent_id"),
        _operations.c.tracking_key == bindparam("tracking_key"),
        _operations.c.state.not_in([literal_column(f"'{s}'") for s in TRACKING_KEY_FREE_STATES]),
    )
    .limit(1)
)


async def tracking_key_in_use(conn: DirectConnection, parent_id: int, tracking_key: str) -> bool:
    """Whether an operation of this parent holds ``tracking_key`` (the operation path's probe;
    ``operation_by_tracking_key`` then reads that operation)."""
    found = await conn.scalar(
        _LIVE_TRACKING_KEY, {"parent_id": parent_id, "tracking_key": tracking_key}
    )
    return found is not None
