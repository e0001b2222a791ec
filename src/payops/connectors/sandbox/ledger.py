"""The sandbox gateway's own books.

The sandbox plays a remote gateway, so it keeps its own record, apart from PayOps's database, of
every payment and operation it performed. That is what lets its inquiry tell the truth after a
simulated timeout, across PayOps restarts and across several PayOps processes.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from payops.config import private_file

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    reference TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL,
    mode TEXT NOT NULL, status TEXT NOT NULL, card_last4 TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS operations (
    reference TEXT PRIMARY KEY, payment_reference TEXT NOT NULL, operation TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, status TEXT NOT NULL,
    transaction_id TEXT NOT NULL, created REAL NOT NULL
);
-- No query reads operations by payment since the totals below exist, and the index cost a
-- page write per operation: dropped from ledgers written before.
DROP INDEX IF EXISTS operations_by_payment;
-- Every inquiry about a payment, as a gateway's logs would show it.
CREATE TABLE IF NOT EXISTS payment_inquiries (
    payment_reference TEXT NOT NULL, at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS payment_inquiries_by_payment ON payment_inquiries (payment_reference);
-- What each payment has had captured, refunded and voided, kept with every operation so the
-- gateway's limits cost the same on a payment's first operation and on its ten-thousandth.
CREATE TABLE IF NOT EXISTS totals (
    payment_reference TEXT NOT NULL, operation TEXT NOT NULL, amount INTEGER NOT NULL,
    PRIMARY KEY (payment_reference, operation)
);
"""
_BACKFILL_TOTALS = """
INSERT INTO totals (payment_reference, operation, amount)
SELECT payment_reference, operation, SUM(amount) FROM operations GROUP BY 1, 2
"""
# What _perform reads, writes and answers, in one place. The payment comes with its running
# totals in one statement; the operation is written without reading it back, as its row is
# exactly what was given (a reference already known is answered from its first row instead).
_PAYMENT_AND_TOTALS = """
SELECT p.reference, p.amount, p.currency, p.mode, p.status,
    coalesce((SELECT t.amount FROM totals t
              WHERE t.payment_reference = p.reference AND t.operation = 'capture'), 0) AS captured,
    coalesce((SELECT t.amount FROM totals t
              WHERE t.payment_reference = p.reference AND t.operation = 'refund'), 0) AS refunded,
    coalesce((SELECT t.amount FROM totals t
              WHERE t.payment_reference = p.reference AND t.operation = 'void'), 0) AS voided
FROM payments p WHERE p.reference = ?
"""
_INSERT_OPERATION = """
INSERT INTO operations (reference, payment_reference, operation, amount, currency, status,
    transaction_id, created)
VALUES (:reference, :payment_reference, :operation, :amount, :currency, :status,
    :transaction_id, :created)
ON CONFLICT (reference) DO NOTHING
"""
_ADD_TO_TOTAL = """
INSERT INTO totals VALUES (?, ?, ?)
ON CONFLICT (payment_reference, operation) DO UPDATE SET amount = amount + excluded.amount
"""
_OPERATION = "SELECT * FROM operations WHERE reference = ?"


class LedgerRefusal(Exception):
    """The sandbox refuses the operation as a real gateway would (beyond authorization, ...)."""


class SandboxLedger:
    """One long-lived SQLite connection per ledger file and process (``SandboxLedger.open``),
    used by one thread at a time. Opening the file, reading its schema and switching its journal
    mode on every call cost more than the call itself. Several processes share the file through
    SQLite's own write lock (WAL, busy timeout)."""

    _open: ClassVar[OrderedDict[Path, SandboxLedger]] = OrderedDict()
    _open_lock: ClassVar[threading.Lock] = threading.Lock()
    # Tests build many apps, each with its own ledger file, in one process: keep only a few open.
    MAX_OPEN: ClassVar[int] = 8

    @classmethod
    def open(cls, path: Path) -> SandboxLedger:
        key = Path(path).resolve()
        with cls._open_lock:
            ledger = cls._open.get(key)
            if ledger is None:
                ledger = cls._open[key] = cls(key)
                while len(cls._open) > cls.MAX_OPEN:
                    cls._open.popitem(last=False)[1].close()
            else:
                cls._open.move_to_end(key)
            return ledger

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        private_file(self.path)  # 0600, like the PayOps database beside it
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        # perform_now's connection: used only by the thread that calls perform_now (the event
        # loop's); closed by close().
        self._quick: sqlite3.Connection | None = None
        self._quick_calls = 0
        # Set while a background checkpoint runs (see perform_now).
        self._checkpointing = False
        with self._connection() as conn:
            # One transaction, as several processes may open the same file at once.
            conn.execute("BEGIN IMMEDIATE")
            try:
                had_totals = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type='table' AND name='totals'"
                ).fetchone()
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    conn.execute(statement)
                if not had_totals:  # a ledger written before the totals table existed
                    conn.execute(_BACKFILL_TOTALS)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._conn is None:
                conn = sqlite3.connect(
                    self.path, timeout=60, isolation_level=None, check_same_thread=False
                )
                conn.row_factory = sqlite3.Row
                conn.execute("PRAGMA journal_mode=WAL")
                # WAL with NORMAL survives a crash of the process; like PayOps's own embedded
                # database, it trades the last commits on a power loss for no fsync per call.
                conn.execute("PRAGMA synchronous=NORMAL")
                self._conn = conn
            yield self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._quick is not None:
                self._quick.close()
                self._quick = None

    def record_payment(
        self, reference: str, amount: int, currency: str, mode: str, status: str, card_last4: str
    ) -> dict[str, Any]:
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT * FROM payments WHERE reference=?", (reference,)
                ).fetchone()
                if row is None:
                    conn.execute(
                        "INSERT INTO payments VALUES (?,?,?,?,?,?,?)",
                        (reference, amount, currency, mode, status, card_last4, time.time()),
                    )
                    row = conn.execute(
                        "SELECT * FROM payments WHERE reference=?", (reference,)
                    ).fetchone()
                conn.execute("COMMIT")
                return dict(row)
            except BaseException:
                # The connection outlives this call: never leave it inside a transaction.
                conn.execute("ROLLBACK")
                raise

    def payment(self, reference: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            row = conn.execute("SELECT * FROM payments WHERE reference=?", (reference,)).fetchone()
            return dict(row) if row else None

    def inquire_payment(self, reference: str) -> tuple[dict[str, Any] | None, int]:
        """The payment and how many times it has been asked about, this inquiry included."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("INSERT INTO payment_inquiries VALUES (?,?)", (reference, time.time()))
                row = conn.execute(
                    "SELECT * FROM payments WHERE reference=?", (reference,)
                ).fetchone()
                count = conn.execute(
                    "SELECT COUNT(*) FROM payment_inquiries WHERE payment_reference=?", (reference,)
                ).fetchone()[0]
                conn.execute("COMMIT")
                return (dict(row) if row else None), int(count)
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def operation(self, reference: str) -> dict[str, Any] | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT * FROM operations WHERE reference=?", (reference,)
            ).fetchone()
            return dict(row) if row else None

    def perform(
        self,
        *,
        reference: str,
        payment_reference: str,
        operation: str,
        amount: int,
        currency: str,
        status: str,
        transaction_id: str,
    ) -> dict[str, Any]:
        """Apply an operation once per reference, enforcing the gateway's own limits."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            return self._perform(
                conn,
                reference,
                payment_reference,
                operation,
                amount,
                currency,
                status,
                transaction_id,
            )

    def perform_now(
        self,
        *,
        reference: str,
        payment_reference: str,
        operation: str,
        amount: int,
        currency: str,
        status: str,
        transaction_id: str,
    ) -> dict[str, Any] | None:
        """``perform`` on the calling thread, only when that costs no waiting: None (nothing
        done) when the file's write lock is taken or this process is checkpointing the file;
        the caller then makes the call with ``perform`` in a thread. Handing each call to a
        thread cost more CPU than the call itself (docs/performance.md); waiting for a lock, or
        a WAL checkpoint (disk writes and an fsync), must not hold the caller's event loop.

        Every ``CHECKPOINT_EVERY``-th call done here starts a checkpoint in the background (this
        connection never checkpoints). Until it ends, this process's calls go to the thread's
        connection, which the checkpoint holds: with no writer of this process between, the
        checkpoint copies the whole WAL and the next write starts the WAL file over, so it
        stays small however busy the event loop is."""
        if self._checkpointing:
            return None
        conn = self._quick_connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # locked by another connection: no wait here
            return None
        try:
            row = self._perform(
                conn,
                reference,
                payment_reference,
                operation,
                amount,
                currency,
                status,
                transaction_id,
            )
        except sqlite3.OperationalError:  # busy after all (rolled back): nothing was done
            return None
        self._quick_calls += 1
        if self._quick_calls % self.CHECKPOINT_EVERY == 0:
            self._checkpointing = True
            try:
                self._checkpoints().submit(self._checkpoint)
            except RuntimeError:  # the interpreter is shutting down: no checkpoint this time
                self._checkpointing = False
        return row

    # Calls done on the caller's thread between two background checkpoints. Each operation adds
    # three pages to the WAL: 600 pages, under SQLite's own automatic checkpoint interval (1000).
    CHECKPOINT_EVERY: ClassVar[int] = 200
    _checkpoint_thread: ClassVar[ThreadPoolExecutor | None] = None

    @classmethod
    def _checkpoints(cls) -> ThreadPoolExecutor:
        # One thread for every ledger of the process, started on the first checkpoint.
        with cls._open_lock:
            if cls._checkpoint_thread is None:
                cls._checkpoint_thread = ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="sandbox-ledger-checkpoint"
                )
            return cls._checkpoint_thread

    def _checkpoint(self) -> None:
        try:
            with self._connection() as conn:
                # PASSIVE waits for no other process; a checkpoint that could not copy
                # everything (another process writing meanwhile) is completed by a later one.
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error:  # nothing is lost: the WAL keeps every commit until the next one
            log.warning("sandbox ledger checkpoint failed", exc_info=True)
        finally:
            self._checkpointing = False

    def _quick_connection(self) -> sqlite3.Connection:
        if self._quick is None:
            # No busy timeout (a locked file answers at once) and no automatic checkpoint.
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._quick = conn
        return self._quick

    def _perform(
        self,
        conn: sqlite3.Connection,
        reference: str,
        payment_reference: str,
        operation: str,
        amount: int,
        currency: str,
        status: str,
        transaction_id: str,
    ) -> dict[str, Any]:
        """The body of ``perform``, inside the transaction ``conn`` has begun: one read (the
        payment with its totals) and two writes, or one more read for a reference already
        known, which is answered as before whatever the limits say now."""
        try:
            payment = conn.execute(_PAYMENT_AND_TOTALS, (payment_reference,)).fetchone()
            try:
                self._enforce(payment, operation, amount, currency)
            except LedgerRefusal:
                existing = conn.execute(_OPERATION, (reference,)).fetchone()
                if existing is None:
                    raise
                conn.execute("COMMIT")
                return dict(existing)
            row = {
                "reference": reference,
                "payment_reference": payment_reference,
                "operation": operation,
                "amount": amount,
                "currency": currency,
                "status": status,
                "transaction_id": transaction_id,
                "created": time.time(),
            }
            if not conn.execute(_INSERT_OPERATION, row).rowcount:  # the reference is known
                existing = conn.execute(_OPERATION, (reference,)).fetchone()
                conn.execute("COMMIT")
                return dict(existing)
            conn.execute(_ADD_TO_TOTAL, (payment_reference, operation, amount))
            conn.execute("COMMIT")
            return row
        except BaseException:
            # The connection outlives this call: never leave it inside a transaction.
            conn.execute("ROLLBACK")
            raise

    @staticmethod
    def _enforce(payment: sqlite3.Row | None, operation: str, amount: int, currency: str) -> None:
        """``payment``: a row of ``_PAYMENT_AND_TOTALS``."""
        # A "pending" card payment settles successfully: it only answers late.
        if payment is None or payment["status"] not in ("success", "pending"):
            raise LedgerRefusal("No successful payment with this reference")
        if currency != payment["currency"]:
            raise LedgerRefusal("Currency does not match the payment")
        captured, refunded = payment["captured"], payment["refunded"]
        if payment["voided"]:
            raise LedgerRefusal("The authorization was voided")
        if operation == "capture":
            if payment["mode"] != "authorize":
                raise LedgerRefusal("Only an authorization can be captured")
            if captured + amount > payment["amount"]:
                raise LedgerRefusal("Capture exceeds the authorized amount")
        elif operation == "refund":
            base = payment["amount"] if payment["mode"] == "purchase" else captured
            if refunded + amount > base:
                raise LedgerRefusal("Refund exceeds the captured amount")
        elif operation == "void":
            if payment["mode"] != "authorize" or captured:
                raise LedgerRefusal("Only an uncaptured authorization can be voided")

    @staticmethod
    def as_json(row: dict[str, Any]) -> str:
        return json.dumps(row, sort_keys=True)
