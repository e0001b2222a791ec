"""Engines and transactions for both backends.

PostgreSQL serialises writers on a parent row with ``SELECT … FOR UPDATE``. SQLite has no row locks,
so every write transaction starts with ``BEGIN IMMEDIATE`` (the database write lock) and waits for it
through ``busy_timeout``; reads use a second engine with ordinary deferred transactions, which WAL
lets run beside a writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 60_000

# What a database that is down, unreachable or refusing writes raises. asyncpg's connect failures
# reach us unwrapped (ConnectionRefusedError and other OSErrors), not as SQLAlchemy errors.
DATABASE_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OperationalError, InterfaceError, DisconnectionError, OSError,
    asyncpg.InterfaceError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError,
)


def _sqlite_pragmas(engine: AsyncEngine, *, immediate: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event decide how a transaction starts.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # busy_timeout first: switching to WAL itself may have to wait for another connection.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.write_engine = create_async_engine(url, echo=echo, pool_size=5, max_overflow=10)
            self.read_engine = create_async_engine(url, echo=echo)
            _sqlite_pragmas(self.write_engine, immediate=True)
            _sqlite_pragmas(self.read_engine, immediate=False)
        else:
            self.write_engine = create_async_engine(
                url, echo=echo, pool_size=20, max_overflow=20, pool_pre_ping=True
            )
            self.read_engine = self.write_engine
        # Operations' intent transactions queue on the parent's lock while holding a pooled
        # connection; they may use only part of the pool, so settlements (which complete
        # operations already sent to a gateway) always find a connection.
        capacity = 15 if self.is_sqlite else 40
        self.intent_slots = asyncio.Semaphore(capacity * 2 // 3)
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._read = async_sessionmaker(self.read_engine, expire_on_commit=False)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction; commits on success, rolls back on any exception."""
        async with self._write() as session, session.begin():
            yield session

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._read() as session, session.begin():
            yield session

    async def can_write(self) -> bool:
        """Whether a write transaction can start and write now (for /readyz): a reachable but
        read-only database (a read-only SQLite file, a standby) is not ready. Nothing is changed:
        the probe updates no row and is rolled back."""
        async with self._write() as session:
            try:
                await session.execute(text(
                    "UPDATE alembic_version SET version_num = version_num WHERE 1 = 0"))
            finally:
                await session.rollback()
        return True

    async def dispose(self) -> None:
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
