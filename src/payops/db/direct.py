"""The operation hot path's statements, run on the database driver's own connection (issue 11).

SQLAlchemy's execution layer (execution context, cursor adapter, result object, the greenlet
switch, and on SQLite four thread hand-offs per statement through aiosqlite's cursor) cost about
0.1 ms of CPU per statement, several times the driver's own cost. The statements stay SQLAlchemy
Core constructs, written in the repositories: each is compiled once per engine dialect into its
SQL text, parameter order and the column types' bind and result processors (exactly what
SQLAlchemy would apply), and runs here on a connection that SQLAlchemy's pool hands out, so pool
size, connection set-up and invalidation stay SQLAlchemy's.

Driver errors are raised as SQLAlchemy raises them (``IntegrityError``, ``OperationalError``,
``DBAPIError`` with the driver's error as ``orig``); a connection that is gone, or a statement
interrupted half-way (a cancelled request), invalidates the connection, so it never returns to
the pool in an unknown state.
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections import namedtuple
from collections.abc import Awaitable, Callable, Mapping, Sequence
from operator import itemgetter
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select

# Called with each statement's SQL before it runs (tests count the statements of a refund).
STATEMENT_LISTENERS: list[Callable[[str], None]] = []


class Prepared:
    """One Core statement compiled for one dialect: SQL text, positional parameters with their
    bind processors (and literal defaults), and the row shape with result processors."""

    __slots__ = ("statement", "sql", "_defaults", "_take", "_processors", "_row", "_results")

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        self.statement = statement  # held, so its id is never reused while this entry lives
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        names = tuple(compiled.positiontup or ())
        # Literal values SQLAlchemy made parameters of (coalesce(…, 0), LIMIT 1): not given by
        # callers, sent as compiled.
        self._defaults = {
            name: compiled.binds[name].value for name in names if not compiled.binds[name].required
        }
        take = itemgetter(*names) if names else (lambda _params: ())
        self._take: Callable[[Mapping[str, Any]], Any] = (
            take if len(names) != 1 else (lambda params: (take(params),))
        )
        processors = (
            (index, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for index, name in enumerate(names)
        )
        self._processors = tuple((index, p) for index, p in processors if p is not None)
        columns = list(
            statement.selected_columns
            if isinstance(statement, Select)
            else getattr(statement, "exported_columns", ())
        )
        self._row: Any = namedtuple("Row", [c.key for c in columns], rename=True)  # type: ignore[misc]
        self._results = tuple(
            c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns
        )

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        """The positional arguments: every named parameter (a missing one is a KeyError),
        through its type's bind processor."""
        values = list(self._take({**self._defaults, **params} if self._defaults else params))
        for index, process in self._processors:
            values[index] = process(values[index])
        return values

    def row(self, values: Any) -> Any:
        return self._row._make(
            [p(v) if p is not None else v for p, v in zip(self._results, values, strict=True)]
        )


class DirectConnection:
    """A pooled connection's driver connection: ``first`` (a row or None), ``scalar`` (the
    first row's first value or None) and ``rowcount``, each taking a Core statement and its
    named parameters."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self.postgresql = dialect.name == "postgresql"

    def prepared(self, statement: Any) -> Prepared:
        compiled = _PREPARED.get(self._dialect)
        if compiled is None:
            compiled = _PREPARED[self._dialect] = {}
        found = compiled.get(id(statement))
        if found is None or found.statement is not statement:
            found = compiled[id(statement)] = Prepared(statement, self._dialect)
        return found

    async def first(self, statement: Any, params: Mapping[str, Any]) -> Any:
        prepared = self.prepared(statement)
        values = await self._fetch_first(prepared.sql, prepared.arguments(params))
        return None if values is None else prepared.row(values)

    async def scalar(self, statement: Any, params: Mapping[str, Any]) -> Any:
        row = await self.first(statement, params)
        return None if row is None else row[0]

    async def rowcount(self, statement: Any, params: Mapping[str, Any]) -> int:
        prepared = self.prepared(statement)
        return await self._execute(prepared.sql, prepared.arguments(params))

    async def chain(
        self,
        first: Any,
        then: Sequence[Any],
        params: Mapping[str, Any],
        *,
        returning: bool,
        last: bool = False,
    ) -> Any:
        """Run ``first``, then the statements of ``then`` only if ``first`` returned a row
        (``returning``) or changed exactly one row. Returns that row (or None), or the count
        of rows ``first`` changed. All take ``params``. ``last``: nothing more runs in this
        transaction, so it may be committed with the chain (SQLite: in the same hand-off)."""
        if returning:
            outcome = await self.first(first, params)
            go_on = outcome is not None
        else:
            outcome = await self.rowcount(first, params)
            go_on = outcome == 1
        if go_on:
            for statement in then:
                await self.rowcount(statement, params)
        return outcome

    async def _fetch_first(self, sql: str, args: list[Any]) -> Any:
        raise NotImplementedError

    async def _execute(self, sql: str, args: list[Any]) -> int:
        raise NotImplementedError

    async def begin(self) -> None:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError


def announce(sql: str) -> None:
    for listener in STATEMENT_LISTENERS:
        listener(sql)


# -- PostgreSQL (asyncpg) ------------------------------------------------------------------------


def _translated_postgres_error(error: Exception, sql: str) -> Exception:
    """asyncpg's server-side errors as SQLAlchemy raises them (its asyncpg dialect's mapping);
    errors of the connection itself (InterfaceError, OSError) pass as they are."""
    if isinstance(error, asyncpg.IntegrityConstraintViolationError):
        return sa_exc.IntegrityError(sql, None, error)
    if isinstance(error, asyncpg.exceptions.SyntaxOrAccessError):
        return sa_exc.ProgrammingError(sql, None, error)
    if isinstance(error, asyncpg.exceptions.InternalServerError):
        return sa_exc.InternalError(sql, None, error)
    return sa_exc.DBAPIError(sql, None, error)


class PostgresDirect(DirectConnection):
    def __init__(self, dialect: Dialect, connection: asyncpg.Connection) -> None:
        super().__init__(dialect)
        self._connection = connection
        self._transaction: Any = None

    async def _fetch_first(self, sql: str, args: list[Any]) -> Any:
        announce(sql)
        try:
            return await self._connection.fetchrow(sql, *args)
        except asyncpg.PostgresError as error:
            raise _translated_postgres_error(error, sql) from error

    async def _execute(self, sql: str, args: list[Any]) -> int:
        announce(sql)
        try:
            status = await self._connection.execute(sql, *args)
        except asyncpg.PostgresError as error:
            raise _translated_postgres_error(error, sql) from error
        # "UPDATE 1", "INSERT 0 1", "DELETE 3": the count is the last word.
        last = status.rsplit(" ", 1)[-1]
        return int(last) if last.isdigit() else 0

    async def begin(self) -> None:
        self._transaction = self._connection.transaction()
        try:
            await self._transaction.start()
        except asyncpg.PostgresError as error:
            raise _translated_postgres_error(error, "BEGIN") from error

    async def commit(self) -> None:
        try:
            await self._transaction.commit()
        except asyncpg.PostgresError as error:
            raise _translated_postgres_error(error, "COMMIT") from error

    async def rollback(self) -> None:
        await self._transaction.rollback()


# -- SQLite (the sqlite3 connection beneath aiosqlite) -------------------------------------------


def _translated_sqlite_error(error: sqlite3.Error, sql: str) -> Exception:
    if isinstance(error, sqlite3.IntegrityError):
        return sa_exc.IntegrityError(sql, None, error)
    if isinstance(error, sqlite3.OperationalError):  # locked, read-only, disk I/O, …
        return sa_exc.OperationalError(sql, None, error)
    return sa_exc.DBAPIError(sql, None, error)


Runner = Callable[[Callable[[], Any]], Awaitable[Any]]


async def run_here(work: Callable[[], Any]) -> Any:
    """Run ``work`` on the caller's thread (the event loop's): for statements that cannot wait."""
    return work()


class SqliteDirect(DirectConnection):
    """A sqlite3 connection and where its statements run: ``run_in`` takes a function of
    statements and runs it, on aiosqlite's thread (its private ``_execute``, in its queue's
    order: one hand-off per call, where SQLAlchemy's cursor adapter took four per statement) or
    on the event loop's own thread (``run_here``, for a connection that never waits: see
    db/sqlite_on_loop.py). ``begun``: a transaction was already begun on it."""

    def __init__(
        self, dialect: Dialect, raw: sqlite3.Connection, run_in: Runner, *, begun: bool = False
    ) -> None:
        super().__init__(dialect)
        self._raw = raw
        self._run_in = run_in
        self._pending_begin: str | None = None
        self._open = begun  # a transaction begun and not yet ended

    @classmethod
    def on_aiosqlite(cls, dialect: Dialect, connection: Any) -> SqliteDirect:
        return cls(dialect, connection._conn, connection._execute)

    async def _run(
        self,
        sql: str,
        args: list[Any],
        fetch: bool,
        then: Sequence[tuple[str, list[Any]]] = (),
        commit: bool = False,
    ) -> Any:
        begin, self._pending_begin = self._pending_begin, None
        if begin is not None:
            announce(begin)
        announce(sql)
        for step_sql, _ in then:
            announce(step_sql)
        raw = self._raw
        running = [sql]  # the statement an error belongs to

        def run() -> Any:
            if begin is not None:
                raw.execute(begin)
            cursor = raw.execute(sql, args)
            try:
                outcome = cursor.fetchone() if fetch else cursor.rowcount
            finally:
                cursor.close()
            if (outcome is not None) if fetch else (outcome == 1):
                for step_sql, step_args in then:
                    running[0] = step_sql
                    raw.execute(step_sql, step_args).close()
            if commit:
                raw.execute("COMMIT")
                self._open = False
            return outcome

        try:
            return await self._run_in(run)
        except sqlite3.Error as error:
            raise _translated_sqlite_error(error, running[0]) from error

    async def chain(
        self,
        first: Any,
        then: Sequence[Any],
        params: Mapping[str, Any],
        *,
        returning: bool,
        last: bool = False,
    ) -> Any:
        # One hand-off for the whole chain (the writes of an intent or of a settlement), and
        # for the COMMIT after it when it is the transaction's last.
        head = self.prepared(first)
        steps = [(p.sql, p.arguments(params)) for p in map(self.prepared, then)]
        commit = last and self._open
        found = await self._run(head.sql, head.arguments(params), returning, steps, commit)
        return None if returning and found is None else head.row(found) if returning else found

    async def _fetch_first(self, sql: str, args: list[Any]) -> Any:
        return await self._run(sql, args, True)

    async def _execute(self, sql: str, args: list[Any]) -> int:
        return int(await self._run(sql, args, False))

    async def begin(self) -> None:
        # Sent with the transaction's first statement: one hand-off fewer.
        self._pending_begin = "BEGIN IMMEDIATE"
        self._open = True

    async def _end(self, sql: str) -> None:
        if self._pending_begin is not None:  # nothing ran: nothing to end
            self._pending_begin = None
            self._open = False
            return
        if not self._open:  # committed with the transaction's last chain
            return
        # Not announced: like SQLAlchemy's cursor events, listeners see statements, and the
        # transaction's end is not one (PostgreSQL's BEGIN and COMMIT are not either).
        raw = self._raw
        try:
            await self._run_in(lambda: raw.execute(sql))
        except sqlite3.Error as error:
            raise _translated_sqlite_error(error, sql) from error
        self._open = False

    async def commit(self) -> None:
        await self._end("COMMIT")

    async def rollback(self) -> None:
        await self._end("ROLLBACK")


# Compiled statements per dialect instance (the engine's own: its JSON serializer is the one set
# on the engine), by statement. The hot path's statements are built once, so this stays small.
_PREPARED: weakref.WeakKeyDictionary[Dialect, dict[int, Prepared]] = weakref.WeakKeyDictionary()


# What leaves a connection in an unknown state: it is invalidated, not returned to the pool.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncio.CancelledError,
    asyncio.TimeoutError,
    OSError,
    asyncpg.InterfaceError,
    asyncpg.PostgresConnectionError,
)
