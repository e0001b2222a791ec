"""The operation path's driver connections (db/direct.py) behave as SQLAlchemy's did: a driver
error arrives as SQLAlchemy's exception, a failed or cancelled transaction leaves nothing
written and no broken connection in the pool, and rows carry SQLAlchemy's type processing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import Table, bindparam, func, insert, literal_column, select, table
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from payops.context import AppContext
from payops.db.models import ApiKey, AuditEntry
from tests.e2e import post_op
from tests.helpers import Seed

_keys = cast(Table, ApiKey.__table__)
_audit = cast(Table, AuditEntry.__table__)
INSERT_KEY = insert(_keys).values(
    prefix=bindparam("prefix"),
    secret_hash="x",
    name="direct",
    created_at=bindparam("created_at"),
)
COUNT_KEYS = select(func.count()).select_from(_keys).where(_keys.c.name == "direct")
READ_KEY = select(_keys.c.prefix, _keys.c.created_at, _keys.c.revoked_at).where(
    _keys.c.prefix == bindparam("prefix")
)
NOW = {"created_at": datetime(2026, 11, 30, 12, 0, tzinfo=UTC)}


async def test_a_constraint_violation_is_sqlalchemys_and_rolls_back(ctx: AppContext) -> None:
    with pytest.raises(IntegrityError):
        async with ctx.db.direct_write() as conn:
            await conn.rowcount(INSERT_KEY, {"prefix": "dup", **NOW})
            await conn.rowcount(INSERT_KEY, {"prefix": "dup", **NOW})  # same prefix: unique
    async with ctx.db.direct_read() as conn:
        assert await conn.scalar(COUNT_KEYS, {}) == 0  # the first insert went with it


async def test_rows_carry_sqlalchemys_type_processing(ctx: AppContext) -> None:
    async with ctx.db.direct_write() as conn:
        assert await conn.rowcount(INSERT_KEY, {"prefix": "typed", **NOW}) == 1
    async with ctx.db.direct_read() as conn:
        row = await conn.first(READ_KEY, {"prefix": "typed"})
        missing = await conn.first(READ_KEY, {"prefix": "absent"})
    assert missing is None
    assert row.prefix == "typed" and row.revoked_at is None
    # UTCDateTime's processing: an aware UTC datetime on both databases (SQLite stores text).
    assert row.created_at == NOW["created_at"] and row.created_at.tzinfo is not None


async def test_a_chain_stops_unless_its_first_statement_took(ctx: AppContext) -> None:
    audit = insert(_audit).values(
        at=bindparam("created_at"),
        actor_type="test",
        actor="t",
        action="direct",
        session_id="",
        order_no="",
        result="chained",
        details={},
    )
    async with ctx.db.direct_write() as conn:
        found = await conn.chain(READ_KEY, [audit], {"prefix": "absent", **NOW}, returning=True)
        assert found is None
        await conn.rowcount(INSERT_KEY, {"prefix": "there", **NOW})
        found = await conn.chain(
            READ_KEY, [audit], {"prefix": "there", **NOW}, returning=True, last=True
        )
        assert found.prefix == "there"
    async with ctx.db.read() as session:
        count = await session.scalar(
            select(func.count()).select_from(_audit).where(_audit.c.result == "chained")
        )
    assert count == 1


async def test_a_cancelled_transaction_leaves_nothing_and_the_pool_works(
    ctx: AppContext, client: httpx.AsyncClient, seed: Seed
) -> None:
    started = asyncio.Event()

    async def cancelled_midway() -> None:
        async with ctx.db.direct_write() as conn:
            await conn.rowcount(INSERT_KEY, {"prefix": "cancelled", **NOW})
            started.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(cancelled_midway())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with ctx.db.direct_read() as conn:
        assert await conn.scalar(COUNT_KEYS, {}) == 0
    # The hot path still works on what the pool now holds.
    auth = await seed.api_key()
    await seed.transaction("10.000", "KWD", order_no="ORD-DIRECT")
    for _ in range(3):
        response = await post_op(client, auth, "refund", "1.000", order_no="ORD-DIRECT")
        assert response.status_code == 200, response.text


async def test_statements_are_compiled_once_per_engine(ctx: AppContext) -> None:
    async with ctx.db.direct_read() as conn:
        first: Any = conn.prepared(READ_KEY)
        assert conn.prepared(READ_KEY) is first
        assert ("$1" in first.sql) == (not ctx.db.is_sqlite)


async def test_a_failing_statement_is_a_dbapi_error_and_the_pool_stays_usable(
    ctx: AppContext,
) -> None:
    missing = select(literal_column("1")).select_from(table("no_such_table"))
    with pytest.raises(DBAPIError) as raised:
        async with ctx.db.direct_write() as conn:
            await conn.first(missing, {})
    # PostgreSQL: ProgrammingError (undefined table); SQLite: OperationalError (no such table).
    expected = OperationalError if ctx.db.is_sqlite else ProgrammingError
    assert isinstance(raised.value, expected)
    async with ctx.db.direct_read() as conn:
        assert await conn.scalar(COUNT_KEYS, {}) == 0
