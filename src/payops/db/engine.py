"""Engines and transactions for both backends.

PostgreSQL serialises writers on a parent row with ``SELECT … FOR UPDATE``. SQLite has no row locks,
so every write transaction starts with ``BEGIN IMMEDIATE`` (the database write lock) and waits for it
through ``busy_timeout``; reads use a second engine with ordinary deferred transactions, which WAL
lets run beside a writer.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError, InterfaceError, MissingGreenlet, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import greenlet_spawn

from payops import exact_json
from payops.db.direct import (
    CONNECTION_LOST,
    DirectConnection,
    PostgresDirect,
    SqliteDirect,
    announce,
    run_here,
)
from payops.db.sqlite_on_loop import SqliteOnLoop

SQLITE_BUSY_TIMEOUT_MS = 60_000

# What a database that is down, unreachable or refusing writes raises. asyncpg's connect failures
# reach us unwrapped (ConnectionRefusedError and other OSErrors), not as SQLAlchemy errors.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    DisconnectionError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
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


# PostgreSQL connections one process may hold when nothing says otherwise (`payops serve`
# divides PAYOPS_DB_POOL_TOTAL between its workers).
DEFAULT_POOL_SIZE = 40


def _skip_closed_connections(engine: AsyncEngine) -> None:
    """Never hand out a pooled connection the server has closed (a restart, an idle timeout):
    asyncpg notices the closed socket by itself, so checking costs no round trip. SQLAlchemy's
    ``pool_pre_ping`` did the same with three round trips (BEGIN, a ping, ROLLBACK) on every
    checkout, about a third of a refund's time. A connection that dies between checkout and
    use still fails that one transaction, after which SQLAlchemy invalidates the whole pool."""

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        raw = getattr(dbapi_connection, "_connection", None)
        if raw is not None and raw.is_closed():
            raise DisconnectionError("connection closed by the server")


class Database:
    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        pool_size: int = DEFAULT_POOL_SIZE,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # hide_parameters: statement parameters (customer data, card-holder names, payloads)
        # never reach an exception message or a log line. JSON columns keep exact numbers
        # (exact_json, with orjson as its fast path).
        options: dict[str, Any] = {
            "echo": echo,
            "hide_parameters": True,
            "json_serializer": exact_json.dumps,
            "json_deserializer": exact_json.loads,
        }
        if self.is_sqlite:
            self.write_engine = create_async_engine(url, pool_size=5, max_overflow=10, **options)
            self.read_engine = create_async_engine(url, **options)
            _sqlite_pragmas(self.write_engine, immediate=True)
            _sqlite_pragmas(self.read_engine, immediate=False)
            capacity = 15
        else:
            # A hard cap (no overflow): the process's share of the server's connections.
            self.write_engine = create_async_engine(
                url,
                pool_size=pool_size,
                max_overflow=0,
                **options,
            )
            _skip_closed_connections(self.write_engine)
            # Reads share the pool but run without BEGIN/ROLLBACK: under READ COMMITTED every
            # statement takes its own snapshot anyway, so a read-only transaction added two
            # round trips and nothing else. (Nothing may write or lock through read().)
            self.read_engine = self.write_engine.execution_options(isolation_level="AUTOCOMMIT")
            capacity = pool_size
        # Operations' intent transactions queue on the parent's lock while holding a pooled
        # connection; they may use only part of the pool, so settlements (which complete
        # operations already sent to a gateway) always find a connection.
        self.intent_slots = asyncio.Semaphore(max(1, capacity * 2 // 3))
        self._sqlite_writer = asyncio.Lock() if self.is_sqlite else None
        # The operation path's SQLite writes run on the event loop's thread (a file only: an
        # in-memory database is not shared between connections).
        self._on_loop: SqliteOnLoop | None = None
        database = self.write_engine.url.database
        if self._sqlite_writer is not None and database and database != ":memory:":
            if not self.write_engine.url.query:
                self._on_loop = SqliteOnLoop(database, self._sqlite_writer)
        # ``info`` reaches every session as ``session.info`` (the secret box for stored secrets).
        self._write = async_sessionmaker(self.write_engine, expire_on_commit=False, info=info)
        self._read = async_sessionmaker(self.read_engine, expire_on_commit=False, info=info)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """One write transaction; commits on success, rolls back on any exception."""
        if self._sqlite_writer is not None:
            # SQLite takes one writer at a time, and a writer that finds the lock taken polls
            # for it with sleeps (busy_timeout): under load most of the time went into those
            # sleeps. Writers of this process queue here instead and find the lock free; other
            # processes still meet busy_timeout.
            async with self._sqlite_writer, self._write() as session, session.begin():
                yield session
            return
        async with self._write() as session, session.begin():
            yield session

    @asynccontextmanager
    async def direct_write(self) -> AsyncIterator[DirectConnection]:
        """A write transaction on the driver's own connection (db/direct.py), for the operation
        path's statements: commits on success, rolls back on any exception. On SQLite it
        queues on the same in-process writer lock as ``write()``."""
        if self._sqlite_writer is not None:
            async with self._sqlite_writer:
                raw = self._on_loop.begin() if self._on_loop is not None else None
                if raw is not None:
                    async with self._on_loop_transaction(raw) as conn:
                        yield conn
                    return
                # The file's write lock is another process's: wait for it on aiosqlite's thread.
                async with self._direct(self.write_engine, True) as conn:
                    yield conn
            return
        async with self._direct(self.write_engine, True) as conn:
            yield conn

    @asynccontextmanager
    async def _on_loop_transaction(self, raw: Any) -> AsyncIterator[DirectConnection]:
        assert self._on_loop is not None
        announce("BEGIN IMMEDIATE")
        conn = SqliteDirect(self.write_engine.dialect, raw, run_here, begun=True)
        try:
            yield conn
            await conn.commit()
        except BaseException:
            try:
                await conn.rollback()
            except Exception:  # noqa: BLE001 - its state is unknown: a new one next time
                self._on_loop.discard()
            raise
        finally:
            self._on_loop.transaction_ended()

    @asynccontextmanager
    async def direct_alone(self) -> AsyncIterator[DirectConnection]:
        """For a write that needs no transaction around it: on PostgreSQL the driver's
        connection without BEGIN, each statement committing on its own (so use it for one
        statement that is complete by itself); on SQLite a ``direct_write()`` transaction."""
        if self.is_sqlite:
            async with self.direct_write() as conn:
                yield conn
            return
        async with self._direct(self.write_engine, False) as conn:
            yield conn

    @asynccontextmanager
    async def direct_read(self) -> AsyncIterator[DirectConnection]:
        """The driver's connection for one reading statement, without BEGIN: PostgreSQL's reads
        run in autocommit, and on SQLite one statement is its own transaction. The API-key
        lookup of every request costs less that way."""
        async with self._direct(self.read_engine, False) as conn:
            yield conn

    @asynccontextmanager
    async def _direct(self, engine: AsyncEngine, transaction: bool) -> AsyncIterator[Any]:
        # Straight from the pool (its size, checkout event and invalidation stay SQLAlchemy's),
        # without an engine Connection around it: that cost more than the checkout itself.
        pool = engine.sync_engine.pool
        pooled: Any = None
        if isinstance(pool, QueuePool) and pool.checkedin():
            # A connection waiting in the pool is handed out without any I/O: no greenlet.
            try:
                pooled = _checkout(engine)
            except MissingGreenlet:  # it must be reopened after all (see the filter above)
                pass
        if pooled is None:  # the pool must open a connection or wait for one
            pooled = await greenlet_spawn(_checkout, engine)
        driver = pooled.driver_connection
        conn: DirectConnection = (
            SqliteDirect.on_aiosqlite(engine.dialect, driver)
            if self.is_sqlite
            else PostgresDirect(engine.dialect, driver)
        )
        clean = False
        try:
            if transaction:
                await conn.begin()
            yield conn
            if transaction:
                await conn.commit()
            clean = True
        except BaseException as error:
            # A connection whose state is unknown (lost, or a statement cut short by a
            # cancellation) or whose transaction cannot be rolled back is thrown away.
            if isinstance(error, CONNECTION_LOST) or (transaction and not await _rolled_back(conn)):
                await greenlet_spawn(pooled.invalidate)
            else:
                clean = True
            raise
        finally:
            if clean:
                # No transaction is open: the pool's rollback on return (a thread hand-off
                # on SQLite) is skipped, as SQLAlchemy's own Connection does after a commit.
                pooled._close_special(True)  # no I/O either: no greenlet
            else:
                await greenlet_spawn(pooled.close)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A read (PostgreSQL's run in autocommit; a single statement that needs no session
        goes through ``direct_read``)."""
        async with self._read() as session, session.begin():
            yield session

    async def can_write(self) -> bool:
        """Whether a write transaction can start and write now (for /readyz): a reachable but
        read-only database (a read-only SQLite file, a standby) is not ready. Nothing is changed:
        the probe updates no row and is rolled back."""
        async with self._write() as session:
            try:
                await session.execute(
                    text("UPDATE alembic_version SET version_num = version_num WHERE 1 = 0")
                )
            finally:
                await session.rollback()
        return True

    async def dispose(self) -> None:
        if self._on_loop is not None:
            await self._on_loop.aclose()
        await self.write_engine.dispose()
        if self.is_sqlite:
            await self.read_engine.dispose()


# When a pooled connection must be reopened outside a greenlet, SQLAlchemy closes the connect()
# coroutine it had created, unawaited, and raises MissingGreenlet; _direct then reopens it on the
# greenlet path. Python warns of the closed coroutine: that one warning is expected.
warnings.filterwarnings(
    "ignore",
    message="coroutine 'connect' was never awaited",
    category=RuntimeWarning,
)


def _checkout(engine: AsyncEngine) -> Any:
    try:
        return engine.sync_engine.pool.connect()
    except asyncpg.PostgresError as error:  # too many connections, starting up, …
        raise OperationalError("connect", None, error) from error


async def _rolled_back(conn: DirectConnection) -> bool:
    try:
        await conn.rollback()
    except BaseException:  # noqa: BLE001 - the caller throws the connection away instead
        return False
    return True
