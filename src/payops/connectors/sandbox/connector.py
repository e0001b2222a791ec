"""The built-in sandbox gateway (decisions §8): deterministic, no network.

Operation outcomes are chosen by the last three digits of the amount in minor units, so they work
in every currency: 991 declined, 992 refund queued, 993 done but the reply is lost (timeout),
994 timeout with nothing done, 995 HTTP 500 with nothing done; anything else succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from typing import Any, ClassVar

from payops.config import get_settings
from payops.connectors.base import (
    Connector,
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.sandbox.ledger import LedgerRefusal, SandboxLedger
from payops.money import format_minor

# When the ledger's file is locked (another PayOps process is writing it, for a fraction of a
# millisecond) the call is tried again after these pauses on the event loop before it goes to a
# thread. The thread's connection waits in SQLite's busy handler, which sleeps 1, 2, 5, 10, 15,
# 20, 25 ms... between tries: it made a sixth of the calls of two workers wait 10 ms (p50) to
# 200 ms, most of the refund benchmark's latency tail (docs/performance.md).
LEDGER_RETRY_PAUSES = (0.0, 0.0, 0.0005, 0.001, 0.001, 0.002, 0.004, 0.008)
TRIGGER_DECLINE = 991
TRIGGER_QUEUE = 992
TRIGGER_DONE_THEN_TIMEOUT = 993
TRIGGER_TIMEOUT = 994
TRIGGER_SERVER_ERROR = 995

CARD_SUCCESS = "4111111111111111"
CARD_DECLINED = "4000000000000002"
CARD_PENDING = "4000000000000259"
TEST_CARDS = {CARD_SUCCESS: "success", CARD_DECLINED: "declined", CARD_PENDING: "pending"}


def trigger(amount_minor: int) -> int:
    return amount_minor % 1000


class SandboxConnector(Connector):
    name: ClassVar[str] = "sandbox"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    takes_payments: ClassVar[bool] = True  # the hosted sandbox page
    # The sandbox's replies carry no buyer data (a card's last four digits at most): nothing to
    # redact, declared so that every connector states its choice.
    personal_fields: ClassVar[frozenset[str]] = frozenset()
    # Kept small, so a pending test payment is inquired automatically within a minute.
    attempt_inquiry_minutes: ClassVar[int] = 1

    @classmethod
    def reports_refund_status(cls, options: Any) -> bool:
        # `--option refund_status=false` plays a gateway that documents no refund status.
        return str(options.get("refund_status", "true")).lower() not in ("false", "0", "no")

    @classmethod
    def deployment(cls, settings: Any) -> dict[str, Any]:
        return {
            "ledger_path": settings.effective_sandbox_ledger,
            "queue_seconds": settings.sandbox_queue_seconds,
            "latency_ms": settings.sandbox_latency_ms,
        }

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        deployment = config.deployment or self.deployment(get_settings())
        self.ledger = SandboxLedger.open(deployment["ledger_path"])
        self.queue_seconds = float(deployment["queue_seconds"])
        self.latency = int(deployment["latency_ms"]) / 1000

    async def _delay(self) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)

    # -- payments (used by the hosted page and `payops txn create`) --------------------------
    async def pay(self, payment: PaymentRef, card_number: str) -> GatewayResult:
        await self._delay()
        behaviour = TEST_CARDS.get(card_number, "declined")
        status = {"success": "success", "pending": "pending", "declined": "declined"}[behaviour]
        row = await asyncio.to_thread(
            self.ledger.record_payment,
            payment.reference_number,
            payment.amount,
            payment.currency_code,
            payment.operation_mode,
            status,
            card_number[-4:],
        )
        # The ledger answers for a reference it already knows, whatever card came this time.
        if row["status"] == "pending":
            return GatewayResult(
                Outcome.PENDING,
                self._payment_reply(row, "PENDING"),
                self._payment_params(row),
                "Payment is being processed",
            )
        return self._payment_result(row)

    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        await self._delay()
        row, asked = await asyncio.to_thread(self.ledger.inquire_payment, payment.reference_number)
        if row is None:
            return GatewayResult(
                Outcome.FAILED, {"result": "NOT_FOUND"}, {}, "No payment with this reference"
            )
        if row["status"] == "pending" and asked <= self._pending_inquiries():
            # `--option pending_inquiries=N`: a pending-card payment is still being processed
            # for its first N inquiries (a gateway that has no answer yet).
            return GatewayResult(
                Outcome.PENDING,
                self._payment_reply(row, "PENDING"),
                self._payment_params(row),
                "Payment is being processed",
            )
        return self._payment_result(row)

    def _pending_inquiries(self) -> int:
        try:
            return max(0, int(str((self.config.options or {}).get("pending_inquiries", 0))))
        except ValueError:
            return 0

    def _payment_result(self, row: dict[str, Any]) -> GatewayResult:
        # A "pending" card settles successfully: only an inquiry reveals it.
        if row["status"] in ("success", "pending"):
            return GatewayResult(
                Outcome.SUCCESS,
                self._payment_reply(row, "SUCCESS"),
                self._payment_params(row),
                "Approved",
                {"transaction_id": row["reference"]},
                amount=row["amount"],
                currency_code=row["currency"],
            )
        return GatewayResult(
            Outcome.FAILED,
            self._payment_reply(row, "DECLINED"),
            self._payment_params(row),
            "Card declined",
        )

    def _payment_reply(self, row: dict[str, Any], result: str) -> dict[str, Any]:
        return {
            "result": result,
            "reference": row["reference"],
            "amount": format_minor(row["amount"], row["currency"]),
            "currency": row["currency"],
            "mode": row["mode"],
        }

    @staticmethod
    def _payment_params(row: dict[str, Any]) -> dict[str, Any]:
        return {
            "card_number": f"************{row['card_last4']}" if row["card_last4"] else "",
            "card_type": "VISA",
            "ref": row["reference"],
            "transaction_id": row["reference"],
            "result": row["status"],
        }

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request)

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request)

    async def void(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request)

    async def _operate(self, request: OperationRequest) -> GatewayResult:
        await self._delay()
        code = trigger(request.amount)
        if code == TRIGGER_DECLINE:
            return GatewayResult(
                Outcome.FAILED,
                {
                    "result": "DECLINED",
                    "reference": request.reference_number,
                    "message": "Declined by the sandbox issuer",
                },
                {"result": "declined", "ref": request.reference_number},
                "Declined by the sandbox issuer",
            )
        if code in (TRIGGER_TIMEOUT, TRIGGER_SERVER_ERROR):
            reply = (
                {"error": "timeout"}
                if code == TRIGGER_TIMEOUT
                else {"status_code": 500, "body": "Internal Server Error"}
            )
            return GatewayResult(Outcome.UNKNOWN, reply, {}, "The sandbox gateway did not answer")
        queued = request.operation == "refund" and code == TRIGGER_QUEUE
        call: dict[str, Any] = {
            "reference": request.reference_number,
            "payment_reference": request.payment.reference_number,
            "operation": request.operation,
            "amount": request.amount,
            "currency": request.currency_code,
            "status": "queued" if queued else "done",
            "transaction_id": secrets.token_hex(8),
        }
        try:
            row = await self._perform(call)
        except LedgerRefusal as refusal:
            if code == TRIGGER_DONE_THEN_TIMEOUT:  # the refusal's reply is lost too
                return GatewayResult(
                    Outcome.UNKNOWN, {"error": "timeout"}, {}, "The sandbox gateway did not answer"
                )
            return GatewayResult(
                Outcome.FAILED,
                {"result": "ERROR", "reference": request.reference_number, "message": str(refusal)},
                {"result": "error", "ref": request.reference_number},
                str(refusal),
            )
        if code == TRIGGER_DONE_THEN_TIMEOUT:
            return GatewayResult(
                Outcome.UNKNOWN, {"error": "timeout"}, {}, "The sandbox gateway did not answer"
            )
        return self._operation_result(row)

    async def _perform(self, call: dict[str, Any]) -> dict[str, Any]:
        """The ledger's operation: on the event loop's thread when the file is free (handing
        each call to a thread costs more than the call), tried again after short pauses while
        another process holds the file, and in a thread only when it stays locked."""
        row = self.ledger.perform_now(**call)
        for pause in LEDGER_RETRY_PAUSES:
            if row is not None:
                break
            await asyncio.sleep(pause)
            row = self.ledger.perform_now(**call)
        if row is None:
            row = await asyncio.to_thread(functools.partial(self.ledger.perform, **call))
        return row

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        await self._delay()
        row = await asyncio.to_thread(self.ledger.operation, request.reference_number)
        if row is None:
            return GatewayResult(
                Outcome.FAILED,
                {"result": "NOT_FOUND", "reference": request.reference_number},
                {"result": "not_found", "ref": request.reference_number},
                "No operation with this reference",
            )
        return self._operation_result(row)

    def _operation_result(self, row: dict[str, Any]) -> GatewayResult:
        status = row["status"]
        if status == "queued" and time.time() - row["created"] >= self.queue_seconds:
            status = "done"
        raw = {
            "result": "SUCCESS" if status == "done" else "QUEUED",
            "reference": row["reference"],
            "transaction_id": row["transaction_id"],
            "operation": row["operation"],
            "amount": format_minor(row["amount"], row["currency"]),
            "currency": row["currency"],
        }
        params = {
            "ref": row["reference"],
            "transaction_id": row["transaction_id"],
            "result": "success" if status == "done" else "queued",
        }
        outcome = Outcome.SUCCESS if status == "done" else Outcome.PENDING
        message = "Approved" if status == "done" else "Refund queued"
        return GatewayResult(
            outcome, raw, params, message, {"transaction_id": row["transaction_id"]}
        )
