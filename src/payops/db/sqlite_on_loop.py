"""The operation path's SQLite write transactions, run on the event loop's own thread.

Through aiosqlite every call is a hand-off to its thread and back (two thread wake-ups, a queue,
a future): an intent and a settlement cost four such hand-offs, more CPU than their statements.
A write transaction of this process already holds the in-process writer lock, and once SQLite's
own write lock is taken (``BEGIN IMMEDIATE``) nothing in WAL mode waits: the statements of an
intent or a settlement take tens of microseconds and run here, on the loop's thread, on one
connection kept for it.

Nothing may block the loop, so this connection never waits for anything:

- no busy timeout: when another process (a second worker, a CLI command) holds the file's write
  lock, ``BEGIN IMMEDIATE`` fails at once and the transaction runs on aiosqlite's thread
  instead, which waits there (``Database._direct``);
- no automatic checkpoint (a checkpoint writes the database file and syncs it): every
  ``CHECKPOINT_EVERY`` commits, a passive checkpoint runs on a thread while this process's
  writers wait for the in-process writer lock (asynchronously, the loop is free), so it copies
  the whole WAL and the next write starts the WAL file over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from typing import Any

log = logging.getLogger(__name__)

# Commits on the loop between two checkpoints. An intent and a settlement add a few pages each:
# a few hundred pages, under SQLite's own automatic checkpoint interval (1,000).
CHECKPOINT_EVERY = 100


class SqliteOnLoop:
    def __init__(self, path: str, writer_lock: asyncio.Lock) -> None:
        self.path = path
        self._writer_lock = writer_lock
        self._connection: sqlite3.Connection | None = None
        self._ended = 0
        self._checkpoints: set[asyncio.Task[None]] = set()

    def begin(self) -> sqlite3.Connection | None:
        """The connection with a write transaction begun (``BEGIN IMMEDIATE``), or None when
        the file's write lock is taken by another process (the caller then goes the waiting
        way). Call it holding the in-process writer lock."""
        try:
            conn = self._connect()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # locked (no waiting here), or it cannot write at all
            return None
        return conn

    def transaction_ended(self) -> None:
        """Count a transaction ended on the loop; start a checkpoint when one is due."""
        self._ended += 1
        if self._ended % CHECKPOINT_EVERY == 0:
            task = asyncio.get_running_loop().create_task(self._checkpoint())
            self._checkpoints.add(task)
            task.add_done_callback(self._checkpoints.discard)

    def discard(self) -> None:
        """Close the connection (its state is unknown); the next transaction opens another."""
        if self._connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self._connection.close()
            self._connection = None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            # Settings of this connection only (none takes a lock); the file is in WAL mode
            # already (set by the engine's connections, and kept by the file).
            conn.execute("PRAGMA busy_timeout=0")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._connection = conn
        return self._connection

    async def _checkpoint(self) -> None:
        try:
            # No writer of this process meanwhile: the checkpoint can copy the whole WAL.
            async with self._writer_lock:
                await asyncio.to_thread(_checkpoint_file, self.path)
        except Exception:  # noqa: BLE001 - the next one will try again; SQLite stays consistent
            log.warning("SQLite checkpoint failed", exc_info=True)

    async def aclose(self) -> None:
        for task in list(self._checkpoints):
            with contextlib.suppress(Exception):
                await task
        self.discard()


def _checkpoint_file(path: str) -> Any:
    conn = sqlite3.connect(path, timeout=5, isolation_level=None)
    try:
        # PASSIVE waits for no other process; what it cannot copy now, a later one will.
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        conn.close()
