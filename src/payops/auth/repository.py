"""SQL for users and API keys."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result, Table, bindparam, case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.direct import DirectConnection
from payops.db.models import ApiKey, AuthFailureCounter, User


async def user_by_username(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def user_by_id(session: AsyncSession, user_id: int) -> User | None:
    return await session.scalar(select(User).where(User.id == user_id))


async def list_users(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.username)))


async def api_key_by_prefix(session: AsyncSession, prefix: str) -> ApiKey | None:
    return await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))


_api_keys = cast(Table, ApiKey.__table__)
_KEY_CHECK = select(
    _api_keys.c.prefix, _api_keys.c.secret_hash, _api_keys.c.revoked_at, _api_keys.c.expires_at
).where(_api_keys.c.prefix == bindparam("prefix"))


async def api_key_check(conn: DirectConnection, prefix: str) -> Any:
    """What authenticating with an API key reads (prefix, secret_hash, revoked_at, expires_at),
    as a row, or None: every request of an API client makes this lookup."""
    return await conn.first(_KEY_CHECK, {"prefix": prefix})


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    return list(await session.scalars(select(ApiKey).order_by(ApiKey.created_at)))


# -- failed-login counters (auth/throttle.py) -------------------------------------------------


def _insert_for(session: AsyncSession) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


async def current_failures(
    session: AsyncSession, keys: list[str], now_ms: int
) -> dict[str, tuple[int, int]]:
    """Failures and window end of each key whose window is still open."""
    table = cast(Table, AuthFailureCounter.__table__)
    rows = await session.execute(
        select(table.c.key, table.c.failures, table.c.window_ends_ms).where(
            table.c.key.in_(keys), table.c.window_ends_ms > now_ms
        )
    )
    return {key: (int(failures), int(ends)) for key, failures, ends in rows}


async def count_failure(
    session: AsyncSession, key: str, now_ms: int, window_ms: int
) -> tuple[int, int]:
    """One more failure for ``key`` in one atomic statement; a passed window starts a new one.
    Returns the failures in the window, this one included, and when the window ends."""
    table = cast(Table, AuthFailureCounter.__table__)
    passed = table.c.window_ends_ms <= now_ms
    statement = (
        _insert_for(session)(table)
        .values(key=key, failures=1, window_ends_ms=now_ms + window_ms)
        .on_conflict_do_update(
            index_elements=[table.c.key],
            set_={
                # Both expressions read the row as it was before this update.
                "failures": case((passed, 1), else_=table.c.failures + 1),
                "window_ends_ms": case((passed, now_ms + window_ms), else_=table.c.window_ends_ms),
            },
        )
        .returning(table.c.failures, table.c.window_ends_ms)
    )
    failures, window_ends_ms = (await session.execute(statement)).one()
    return int(failures), int(window_ends_ms)


async def uncount_failures(session: AsyncSession, counted: list[tuple[str, int]]) -> None:
    """Take back failures counted in advance (key, window end), where that window is still the
    current one; a counter back at zero is deleted, so successful logins leave no rows behind."""
    table = cast(Table, AuthFailureCounter.__table__)
    for key, window_ends_ms in counted:
        await session.execute(
            update(table)
            .where(
                table.c.key == key, table.c.window_ends_ms == window_ends_ms, table.c.failures > 0
            )
            .values(failures=table.c.failures - 1)
        )
    await session.execute(
        delete(table).where(table.c.key.in_([key for key, _ in counted]), table.c.failures <= 0)
    )


async def sweep_failures(session: AsyncSession, now_ms: int, max_entries: int) -> int:
    """Delete counters whose window has passed, then the oldest beyond ``max_entries`` (never
    all of them: a flood of new keys must not reset everyone's counters). Returns rows deleted.
    Rows a login is updating right now are skipped (PostgreSQL ``SKIP LOCKED``), so the sweep
    never waits for, or deadlocks with, a login; SQLite serialises writers anyway."""
    table = cast(Table, AuthFailureCounter.__table__)
    expired = (
        select(table.c.key)
        .where(table.c.window_ends_ms <= now_ms)
        .with_for_update(skip_locked=True)
    )
    deleted = _rowcount(await session.execute(delete(table).where(table.c.key.in_(expired))))
    count = int(await session.scalar(select(func.count()).select_from(table)) or 0)
    if count > max_entries:
        oldest = (
            select(table.c.key)
            .order_by(table.c.window_ends_ms, table.c.key)
            .limit(count - max_entries)
            .with_for_update(skip_locked=True)
        )
        deleted += _rowcount(await session.execute(delete(table).where(table.c.key.in_(oldest))))
    return int(deleted or 0)


def _rowcount(result: Result[Any]) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)
