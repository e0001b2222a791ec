"""The sandbox gateway's own books.

The sandbox plays a remote gateway, so it keeps its own record, apart from PayOps's database, of
every payment and operation it performed. That is what lets its inquiry tell the truth after a
simulated timeout, across PayOps restarts and across several PayOps processes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from payops.config import private_file

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
"""


class LedgerRefusal(Exception):
    """The sandbox refuses the operation as a real gateway would (beyond authorization, ...)."""


class SandboxLedger:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        private_file(self.path)  # 0600, like the PayOps database beside it
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        return conn

    def record_payment(
        self, reference: str, amount: int, currency: str, mode: str, status: str, card_last4: str
    ) -> dict[str, Any]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT * FROM payments WHERE reference=?", (reference,)).fetchone()
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

    def payment(self, reference: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM payments WHERE reference=?", (reference,)).fetchone()
            return dict(row) if row else None

    def operation(self, reference: str) -> dict[str, Any] | None:
        with self._connect() as conn:
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
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                existing = conn.execute(
                    "SELECT * FROM operations WHERE reference=?", (reference,)
                ).fetchone()
                if existing is not None:  # the same reference again: answer as before
                    conn.execute("COMMIT")
                    return dict(existing)
                payment = conn.execute(
                    "SELECT * FROM payments WHERE reference=?", (payment_reference,)
                ).fetchone()
                self._enforce(conn, payment, operation, amount, currency)
                conn.execute(
                    "INSERT INTO operations VALUES (?,?,?,?,?,?,?,?)",
                    (reference, payment_reference, operation, amount, currency, status,
                     transaction_id, time.time()),
                )
                row = conn.execute(
                    "SELECT * FROM operations WHERE reference=?", (reference,)
                ).fetchone()
                conn.execute("COMMIT")
                return dict(row)
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _enforce(
        conn: sqlite3.Connection, payment: sqlite3.Row | None, operation: str, amount: int,
        currency: str,
    ) -> None:
        # A "pending" card payment settles successfully: it only answers late.
        if payment is None or payment["status"] not in ("success", "pending"):
            raise LedgerRefusal("No successful payment with this reference")
        if currency != payment["currency"]:
            raise LedgerRefusal("Currency does not match the payment")
        done = {
            op: total or 0
            for op, total in conn.execute(
                "SELECT operation, SUM(amount) FROM operations WHERE payment_reference=? "
                "GROUP BY operation",
                (payment["reference"],),
            )
        }
        captured, refunded, voided = done.get("capture", 0), done.get("refund", 0), done.get("void", 0)
        if voided:
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
