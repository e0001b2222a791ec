"""The built-in sandbox gateway (decisions §8), driven directly through its connector."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from payops.config import Settings
from payops.connectors.base import (
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.registry import build_connector, connector_class
from payops.connectors.sandbox.connector import SandboxConnector, trigger
from payops.connectors.sandbox.ledger import SandboxLedger
from payops.ids import new_reference_number

SUCCESS_CARD = "4111111111111111"
DECLINED_CARD = "4000000000000002"
PENDING_CARD = "4000000000000259"
QUEUE_SECONDS = 0.2
TXN_ID = re.compile(r"[0-9a-f]{16}")


# -- canned replies: what the sandbox answers, exactly ------------------------------------


def payment_response(
    ref: str, result: str, amount: str, currency: str = "KWD", mode: str = "purchase"
) -> dict[str, Any]:
    return {
        "result": result,
        "reference": ref,
        "amount": amount,
        "currency": currency,
        "mode": mode,
    }


def payment_params(ref: str, status: str, last4: str) -> dict[str, Any]:
    return {
        "card_number": f"************{last4}",
        "card_type": "VISA",
        "ref": ref,
        "transaction_id": ref,
        "result": status,
    }


def successful_operation_response(
    operation: str, ref: str, tid: str, amount: str, currency: str = "KWD", result: str = "SUCCESS"
) -> dict[str, Any]:
    return {
        "result": result,
        "reference": ref,
        "transaction_id": tid,
        "operation": operation,
        "amount": amount,
        "currency": currency,
    }


def successful_capture_response(ref: str, tid: str, amount: str) -> dict[str, Any]:
    return successful_operation_response("capture", ref, tid, amount)


def successful_refund_response(ref: str, tid: str, amount: str) -> dict[str, Any]:
    return successful_operation_response("refund", ref, tid, amount)


def successful_void_response(ref: str, tid: str, amount: str) -> dict[str, Any]:
    return successful_operation_response("void", ref, tid, amount)


def queued_refund_response(ref: str, tid: str, amount: str) -> dict[str, Any]:
    return successful_operation_response("refund", ref, tid, amount, result="QUEUED")


def operation_params(ref: str, tid: str, result: str = "success") -> dict[str, Any]:
    return {"ref": ref, "transaction_id": tid, "result": result}


def declined_response(ref: str) -> dict[str, Any]:
    return {"result": "DECLINED", "reference": ref, "message": "Declined by the sandbox issuer"}


def refused_response(ref: str, message: str) -> dict[str, Any]:
    return {"result": "ERROR", "reference": ref, "message": message}


def not_found_response(ref: str) -> dict[str, Any]:
    return {"result": "NOT_FOUND", "reference": ref}


TIMEOUT_RESPONSE = {"error": "timeout"}
SERVER_ERROR_RESPONSE = {"status_code": 500, "body": "Internal Server Error"}


# -- fixtures and helpers --------------------------------------------------------------------


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    return Settings(**{"data_dir": data_dir, "sandbox_queue_seconds": QUEUE_SECONDS, **overrides})


def make_connector(settings: Settings, pg_code: str = "sandbox-kwd") -> SandboxConnector:
    return SandboxConnector(
        ConnectorConfig(
            pg_code=pg_code,
            is_sandbox=True,
            credentials={},
            deployment=SandboxConnector.deployment(settings),
        )
    )


@pytest.fixture
def sandbox_settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def sandbox(sandbox_settings: Settings) -> SandboxConnector:
    return make_connector(sandbox_settings)


def payment(
    amount: int = 25_000, currency: str = "KWD", mode: str = "purchase", ref: str | None = None
) -> PaymentRef:
    return PaymentRef(
        reference_number=ref or new_reference_number(),
        amount=amount,
        currency_code=currency,
        operation_mode=mode,
    )


def request(
    operation: str,
    pay: PaymentRef,
    amount: int,
    ref: str | None = None,
    currency: str | None = None,
) -> OperationRequest:
    return OperationRequest(
        operation=operation,
        reference_number=ref or new_reference_number(),
        amount=amount,
        currency_code=currency or pay.currency_code,
        payment=pay,
    )


async def paid(
    sandbox: SandboxConnector,
    mode: str = "purchase",
    amount: int = 25_000,
    currency: str = "KWD",
    card: str = SUCCESS_CARD,
) -> PaymentRef:
    pay = payment(amount, currency, mode)
    await sandbox.pay(pay, card)
    return pay


def ledger_rows(sandbox: SandboxConnector, table: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(sandbox.ledger.path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]  # noqa: S608
    finally:
        conn.close()


def tid_of(result: GatewayResult) -> str:
    tid = result.raw["transaction_id"]
    assert TXN_ID.fullmatch(tid)
    return tid


# -- identity --------------------------------------------------------------------------------


def test_registered_with_every_capability(sandbox_settings: Settings) -> None:
    assert SandboxConnector.name == "sandbox"
    assert SandboxConnector.capabilities == {"capture", "refund", "void", "inquiry"}
    assert connector_class("sandbox") is SandboxConnector
    built = build_connector(
        "sandbox",
        ConnectorConfig("x", True, {}, deployment=SandboxConnector.deployment(sandbox_settings)),
    )
    assert isinstance(built, SandboxConnector)


def test_ledger_lives_in_the_data_dir(sandbox: SandboxConnector, tmp_path: Path) -> None:
    assert sandbox.ledger.path == tmp_path / "sandbox-gateway.sqlite3"
    assert sandbox.ledger.path.exists()


def test_ledger_path_setting_is_honoured(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data", sandbox_ledger_path=tmp_path / "elsewhere.db")
    assert make_connector(settings).ledger.path == tmp_path / "elsewhere.db"


@pytest.mark.parametrize(
    ("amount", "code"), [(10_991, 991), (991, 991), (1_000, 0), (7_992, 992), (123_456_995, 995)]
)
def test_trigger_is_last_three_digits_of_minor_units(amount: int, code: int) -> None:
    assert trigger(amount) == code


# -- payments with the test cards ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["purchase", "authorize"])
async def test_pay_success_card(sandbox: SandboxConnector, mode: str) -> None:
    pay = payment(25_000, "KWD", mode)
    result = await sandbox.pay(pay, SUCCESS_CARD)
    ref = pay.reference_number
    assert result == GatewayResult(
        Outcome.SUCCESS,
        payment_response(ref, "SUCCESS", "25.000", "KWD", mode),
        payment_params(ref, "success", "1111"),
        "Approved",
        {"transaction_id": ref},
        amount=25_000,  # what the sandbox charged, as a gateway's reply says (decisions §13)
        currency_code="KWD",
    )


async def test_a_repeated_attempt_reference_is_the_same_attempt(
    sandbox: SandboxConnector, sandbox_settings: Settings
) -> None:
    """Like a real gateway, the sandbox charges once per attempt reference: a repeat (another
    card, another amount) answers with the first attempt, reporting what it charged."""
    first = payment(25_000)
    again = PaymentRef(
        reference_number=first.reference_number,
        amount=90_000,
        currency_code="KWD",
        operation_mode="purchase",
    )
    answers = [await sandbox.pay(first, SUCCESS_CARD), await sandbox.pay(again, DECLINED_CARD)]
    assert [(a.outcome, a.amount) for a in answers] == [(Outcome.SUCCESS, 25_000)] * 2
    with sqlite3.connect(sandbox_settings.effective_sandbox_ledger) as conn:
        assert conn.execute("SELECT count(*) FROM payments").fetchone() == (1,)


async def test_pay_declined_card(sandbox: SandboxConnector) -> None:
    pay = payment(25_000)
    result = await sandbox.pay(pay, DECLINED_CARD)
    ref = pay.reference_number
    assert result == GatewayResult(
        Outcome.FAILED,
        payment_response(ref, "DECLINED", "25.000"),
        payment_params(ref, "declined", "0002"),
        "Card declined",
    )


async def test_pay_pending_card_then_inquiry_reveals_success(sandbox: SandboxConnector) -> None:
    pay = payment(25_000, mode="authorize")
    result = await sandbox.pay(pay, PENDING_CARD)
    ref = pay.reference_number
    assert result == GatewayResult(
        Outcome.PENDING,
        payment_response(ref, "PENDING", "25.000", mode="authorize"),
        payment_params(ref, "pending", "0259"),
        "Payment is being processed",
    )
    inquiry = await sandbox.inquire_payment(pay)
    assert inquiry.outcome is Outcome.SUCCESS
    assert inquiry.raw == payment_response(ref, "SUCCESS", "25.000", mode="authorize")
    assert inquiry.message == "Approved"
    assert inquiry.gateway_refs == {"transaction_id": ref}


async def test_inquire_payment_reports_what_was_recorded(sandbox: SandboxConnector) -> None:
    ok = await paid(sandbox)
    declined = await paid(sandbox, card=DECLINED_CARD)
    assert (await sandbox.inquire_payment(ok)).outcome is Outcome.SUCCESS
    failed = await sandbox.inquire_payment(declined)
    assert failed.outcome is Outcome.FAILED
    assert failed.raw["result"] == "DECLINED"


async def test_inquire_unknown_payment(sandbox: SandboxConnector) -> None:
    result = await sandbox.inquire_payment(payment())
    assert result == GatewayResult(
        Outcome.FAILED, {"result": "NOT_FOUND"}, {}, "No payment with this reference"
    )


async def test_unknown_card_is_declined(sandbox: SandboxConnector) -> None:
    pay = payment()
    result = await sandbox.pay(pay, "5555555555554444")
    assert result.outcome is Outcome.FAILED
    assert result.pg_params["card_number"] == "************4444"


async def test_pay_amounts_in_other_currencies(sandbox: SandboxConnector) -> None:
    usd = await sandbox.pay(payment(1_999, "USD"), SUCCESS_CARD)
    jpy = await sandbox.pay(payment(2_000, "JPY"), SUCCESS_CARD)
    assert usd.raw["amount"] == "19.99" and usd.raw["currency"] == "USD"
    assert jpy.raw["amount"] == "2000" and jpy.raw["currency"] == "JPY"


async def test_same_payment_reference_is_recorded_once(sandbox: SandboxConnector) -> None:
    pay = payment()
    first = await sandbox.pay(pay, SUCCESS_CARD)
    second = await sandbox.pay(pay, SUCCESS_CARD)
    assert first == second
    assert len(ledger_rows(sandbox, "payments")) == 1


@pytest.mark.parametrize("card", [SUCCESS_CARD, DECLINED_CARD, PENDING_CARD, "5555555555554444"])
async def test_card_numbers_never_appear_in_full(sandbox: SandboxConnector, card: str) -> None:
    pay = payment(mode="authorize")
    results = [await sandbox.pay(pay, card), await sandbox.inquire_payment(pay)]
    if card != DECLINED_CARD and card != "5555555555554444":
        results.append(await sandbox.run(request("capture", pay, 1_000)))
    for result in results:
        text = json.dumps([result.raw, result.pg_params, result.message, result.gateway_refs])
        assert card not in text
        assert card[:6] not in text  # not even the BIN
    assert results[0].pg_params["card_number"] == "*" * 12 + card[-4:]
    # The gateway's own books keep the last four digits only.
    stored = b"".join(p.read_bytes() for p in sandbox.ledger.path.parent.glob("sandbox-gateway*"))
    assert card.encode() not in stored
    assert ledger_rows(sandbox, "payments")[0]["card_last4"] == card[-4:]


async def test_latency_setting_delays_calls(tmp_path: Path) -> None:
    sandbox = make_connector(make_settings(tmp_path, sandbox_latency_ms=100))
    started = time.perf_counter()
    await sandbox.pay(payment(), SUCCESS_CARD)
    assert time.perf_counter() - started >= 0.1


# -- successful operations, the exact normalised result --------------------------------------


async def test_capture_success(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize")
    op = request("capture", pay, 10_000)
    result = await sandbox.capture(op)
    tid = tid_of(result)
    ref = op.reference_number
    assert result == GatewayResult(
        Outcome.SUCCESS,
        successful_capture_response(ref, tid, "10.000"),
        operation_params(ref, tid),
        "Approved",
        {"transaction_id": tid},
    )


async def test_refund_success(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase")
    op = request("refund", pay, 5_000)
    result = await sandbox.refund(op)
    tid = tid_of(result)
    ref = op.reference_number
    assert result == GatewayResult(
        Outcome.SUCCESS,
        successful_refund_response(ref, tid, "5.000"),
        operation_params(ref, tid),
        "Approved",
        {"transaction_id": tid},
    )


async def test_void_success(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize")
    op = request("void", pay, 25_000)
    result = await sandbox.void(op)
    tid = tid_of(result)
    ref = op.reference_number
    assert result == GatewayResult(
        Outcome.SUCCESS,
        successful_void_response(ref, tid, "25.000"),
        operation_params(ref, tid),
        "Approved",
        {"transaction_id": tid},
    )


async def test_run_dispatches_by_operation(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize")
    capture = await sandbox.run(request("capture", pay, 10_000))
    refund = await sandbox.run(request("refund", pay, 4_000))
    assert (capture.raw["operation"], refund.raw["operation"]) == ("capture", "refund")
    assert capture.outcome is refund.outcome is Outcome.SUCCESS


async def test_inquire_operation_after_success_repeats_the_answer(
    sandbox: SandboxConnector,
) -> None:
    pay = await paid(sandbox)
    op = request("refund", pay, 5_000)
    done = await sandbox.refund(op)
    assert await sandbox.inquire_operation(op) == done


async def test_operations_in_a_zero_decimal_currency(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase", 5_000, "JPY")
    result = await sandbox.refund(request("refund", pay, 1_500))
    assert result.outcome is Outcome.SUCCESS
    assert result.raw["amount"] == "1500" and result.raw["currency"] == "JPY"


# -- triggers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "mode"), [("capture", "authorize"), ("refund", "purchase"), ("void", "authorize")]
)
async def test_trigger_991_declined_and_nothing_done(
    sandbox: SandboxConnector, operation: str, mode: str
) -> None:
    pay = await paid(sandbox, mode, 50_000)
    op = request(operation, pay, 10_991)
    result = await sandbox.run(op)
    ref = op.reference_number
    assert result == GatewayResult(
        Outcome.FAILED,
        declined_response(ref),
        {"result": "declined", "ref": ref},
        "Declined by the sandbox issuer",
    )
    inquiry = await sandbox.inquire_operation(op)
    assert inquiry == GatewayResult(
        Outcome.FAILED,
        not_found_response(ref),
        {"result": "not_found", "ref": ref},
        "No operation with this reference",
    )
    assert ledger_rows(sandbox, "operations") == []


async def test_trigger_991_works_in_every_currency(sandbox: SandboxConnector) -> None:
    for currency, total, amount in (
        ("USD", 50_000, 1_991),
        ("JPY", 50_000, 991),
        ("KWD", 50_000, 991),
    ):
        pay = await paid(sandbox, "purchase", total, currency)
        assert (await sandbox.refund(request("refund", pay, amount))).outcome is Outcome.FAILED


async def test_trigger_992_refund_is_queued_then_done(
    sandbox: SandboxConnector, sandbox_settings: Settings
) -> None:
    # The queue time is judged by whoever reads the ledger: an instance with a long queue time
    # sees "queued" deterministically, however slow this machine is.
    slow = make_connector(make_settings(sandbox_settings.data_dir, sandbox_queue_seconds=3600))
    pay = await paid(sandbox, "purchase", 50_000)
    op = request("refund", pay, 10_992)
    result = await slow.refund(op)
    tid = tid_of(result)
    ref = op.reference_number
    assert result == GatewayResult(
        Outcome.PENDING,
        queued_refund_response(ref, tid, "10.992"),
        operation_params(ref, tid, "queued"),
        "Refund queued",
        {"transaction_id": tid},
    )
    still = await slow.inquire_operation(op)
    assert still == result
    await asyncio.sleep(QUEUE_SECONDS + 0.05)
    done = await sandbox.inquire_operation(op)
    assert done == GatewayResult(
        Outcome.SUCCESS,
        successful_refund_response(ref, tid, "10.992"),
        operation_params(ref, tid),
        "Approved",
        {"transaction_id": tid},
    )
    # A queued refund holds its amount: only 50.000 - 10.992 remains refundable.
    over = await sandbox.refund(request("refund", pay, 50_000 - 10_992 + 1))
    assert over.outcome is Outcome.FAILED


@pytest.mark.parametrize(("operation", "mode"), [("capture", "authorize"), ("void", "authorize")])
async def test_trigger_992_only_queues_refunds(
    sandbox: SandboxConnector, operation: str, mode: str
) -> None:
    pay = await paid(sandbox, mode, 50_000)
    result = await sandbox.run(request(operation, pay, 10_992))
    assert result.outcome is Outcome.SUCCESS
    assert result.raw["result"] == "SUCCESS"


@pytest.mark.parametrize(
    ("operation", "mode"), [("capture", "authorize"), ("refund", "purchase"), ("void", "authorize")]
)
async def test_trigger_993_done_but_reply_lost(
    sandbox: SandboxConnector, operation: str, mode: str
) -> None:
    pay = await paid(sandbox, mode, 50_000)
    op = request(operation, pay, 10_993)
    result = await sandbox.run(op)
    assert result == GatewayResult(
        Outcome.UNKNOWN, TIMEOUT_RESPONSE, {}, "The sandbox gateway did not answer"
    )
    inquiry = await sandbox.inquire_operation(op)
    tid = tid_of(inquiry)
    ref = op.reference_number
    assert inquiry == GatewayResult(
        Outcome.SUCCESS,
        successful_operation_response(operation, ref, tid, "10.993"),
        operation_params(ref, tid),
        "Approved",
        {"transaction_id": tid},
    )
    assert len(ledger_rows(sandbox, "operations")) == 1


@pytest.mark.parametrize(("code", "reply"), [(994, TIMEOUT_RESPONSE), (995, SERVER_ERROR_RESPONSE)])
@pytest.mark.parametrize(
    ("operation", "mode"), [("capture", "authorize"), ("refund", "purchase"), ("void", "authorize")]
)
async def test_triggers_994_995_nothing_done(
    sandbox: SandboxConnector, operation: str, mode: str, code: int, reply: dict[str, Any]
) -> None:
    pay = await paid(sandbox, mode, 50_000)
    op = request(operation, pay, 10_000 + code)
    result = await sandbox.run(op)
    assert result == GatewayResult(Outcome.UNKNOWN, reply, {}, "The sandbox gateway did not answer")
    inquiry = await sandbox.inquire_operation(op)
    assert inquiry.outcome is Outcome.FAILED
    assert inquiry.raw == not_found_response(op.reference_number)
    assert ledger_rows(sandbox, "operations") == []
    # Nothing was done, so the full amount is still there to operate on.
    if operation != "void":
        assert (await sandbox.run(request(operation, pay, 50_000))).outcome is Outcome.SUCCESS


async def test_inquire_operation_unknown_reference(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox)
    op = request("refund", pay, 1_000)
    assert (await sandbox.inquire_operation(op)).outcome is Outcome.FAILED


# -- idempotency by reference ----------------------------------------------------------------


async def test_same_reference_twice_performs_once(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    op = request("refund", pay, 20_000)
    first = await sandbox.refund(op)
    second = await sandbox.refund(op)
    assert first.outcome is second.outcome is Outcome.SUCCESS
    assert first == second  # same transaction id: answered as before
    assert len(ledger_rows(sandbox, "operations")) == 1
    # Had it refunded twice (40.000), nothing would be left; 5.000 still is.
    assert (await sandbox.refund(request("refund", pay, 5_000))).outcome is Outcome.SUCCESS
    assert (await sandbox.refund(request("refund", pay, 1))).outcome is Outcome.FAILED


async def test_same_reference_with_another_body_answers_as_before(
    sandbox: SandboxConnector,
) -> None:
    pay = await paid(sandbox, "authorize", 25_000)
    op = request("capture", pay, 10_000)
    first = await sandbox.capture(op)
    replay = OperationRequest("capture", op.reference_number, 3_000, "KWD", pay)
    assert await sandbox.capture(replay) == first
    assert [r["amount"] for r in ledger_rows(sandbox, "operations")] == [10_000]


async def test_993_retried_with_same_reference_performs_once(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize", 20_000)
    op = request("capture", pay, 10_993)
    assert (await sandbox.capture(op)).outcome is Outcome.UNKNOWN
    assert (await sandbox.capture(op)).outcome is Outcome.UNKNOWN
    rows = ledger_rows(sandbox, "operations")
    assert len(rows) == 1 and rows[0]["amount"] == 10_993


async def test_concurrent_same_reference_performs_once(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    op = request("refund", pay, 25_000)
    results = await asyncio.gather(*(sandbox.refund(op) for _ in range(8)))
    assert all(r.outcome is Outcome.SUCCESS for r in results)
    assert len({r.raw["transaction_id"] for r in results}) == 1
    assert len(ledger_rows(sandbox, "operations")) == 1


# -- the gateway's own limits ----------------------------------------------------------------


async def assert_refused(sandbox: SandboxConnector, op: OperationRequest, message: str) -> None:
    result = await sandbox.run(op)
    ref = op.reference_number
    assert result == GatewayResult(
        Outcome.FAILED, refused_response(ref, message), {"result": "error", "ref": ref}, message
    )


async def test_capture_beyond_authorization_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize", 25_000)
    await assert_refused(
        sandbox, request("capture", pay, 25_001), "Capture exceeds the authorized amount"
    )
    assert (await sandbox.capture(request("capture", pay, 15_000))).outcome is Outcome.SUCCESS
    await assert_refused(
        sandbox, request("capture", pay, 10_001), "Capture exceeds the authorized amount"
    )
    assert (await sandbox.capture(request("capture", pay, 10_000))).outcome is Outcome.SUCCESS
    await assert_refused(
        sandbox, request("capture", pay, 1), "Capture exceeds the authorized amount"
    )


async def test_capture_of_a_purchase_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase")
    await assert_refused(
        sandbox, request("capture", pay, 1_000), "Only an authorization can be captured"
    )


async def test_refund_beyond_captured_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize", 25_000)
    await assert_refused(sandbox, request("refund", pay, 1), "Refund exceeds the captured amount")
    await sandbox.capture(request("capture", pay, 10_000))
    await assert_refused(
        sandbox, request("refund", pay, 10_001), "Refund exceeds the captured amount"
    )
    assert (await sandbox.refund(request("refund", pay, 6_000))).outcome is Outcome.SUCCESS
    await assert_refused(
        sandbox, request("refund", pay, 4_001), "Refund exceeds the captured amount"
    )
    assert (await sandbox.refund(request("refund", pay, 4_000))).outcome is Outcome.SUCCESS


async def test_refund_beyond_purchase_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    await assert_refused(
        sandbox, request("refund", pay, 25_001), "Refund exceeds the captured amount"
    )
    assert (await sandbox.refund(request("refund", pay, 25_000))).outcome is Outcome.SUCCESS
    await assert_refused(sandbox, request("refund", pay, 1), "Refund exceeds the captured amount")


async def test_void_after_capture_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize", 25_000)
    await sandbox.capture(request("capture", pay, 1_000))
    await assert_refused(
        sandbox, request("void", pay, 25_000), "Only an uncaptured authorization can be voided"
    )


async def test_void_of_a_purchase_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    await assert_refused(
        sandbox, request("void", pay, 25_000), "Only an uncaptured authorization can be voided"
    )


async def test_nothing_after_a_void(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize", 25_000)
    assert (await sandbox.void(request("void", pay, 25_000))).outcome is Outcome.SUCCESS
    for operation in ("capture", "refund", "void"):
        await assert_refused(
            sandbox, request(operation, pay, 1_000), "The authorization was voided"
        )


async def test_operations_on_a_declined_payment_refused(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "authorize", 25_000, card=DECLINED_CARD)
    for operation in ("capture", "refund", "void"):
        await assert_refused(
            sandbox, request(operation, pay, 1_000), "No successful payment with this reference"
        )


async def test_operations_on_an_unknown_payment_refused(sandbox: SandboxConnector) -> None:
    await assert_refused(
        sandbox, request("refund", payment(), 1_000), "No successful payment with this reference"
    )


async def test_currency_must_match_the_payment(sandbox: SandboxConnector) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    await assert_refused(
        sandbox,
        request("refund", pay, 1_000, currency="USD"),
        "Currency does not match the payment",
    )


@pytest.mark.parametrize(
    ("operation", "mode"), [("refund", "purchase"), ("capture", "authorize"), ("void", "authorize")]
)
async def test_operations_on_a_settled_pending_payment(
    sandbox: SandboxConnector, operation: str, mode: str
) -> None:
    pay = await paid(sandbox, mode, 25_000, card=PENDING_CARD)
    assert (await sandbox.inquire_payment(pay)).outcome is Outcome.SUCCESS
    result = await sandbox.run(request(operation, pay, 5_000))
    assert result.outcome is Outcome.SUCCESS, result.message


# -- its books outlive the process -----------------------------------------------------------


async def test_second_instance_sees_the_first_ones_records(sandbox_settings: Settings) -> None:
    first = make_connector(sandbox_settings)
    pay = await paid(first, "purchase", 25_000)
    lost = request("refund", pay, 10_993)
    assert (await first.refund(lost)).outcome is Outcome.UNKNOWN
    await first.aclose()
    del first

    second = make_connector(make_settings(sandbox_settings.data_dir), pg_code="other")
    assert (await second.inquire_payment(pay)).outcome is Outcome.SUCCESS
    assert (await second.inquire_operation(lost)).outcome is Outcome.SUCCESS
    # The limits count what the first instance did.
    over = await second.refund(request("refund", pay, 25_000 - 10_993 + 1))
    assert over.outcome is Outcome.FAILED
    assert over.message == "Refund exceeds the captured amount"
    # And the same reference is not performed again by the second instance.
    again = await second.refund(lost)
    assert again.outcome is Outcome.UNKNOWN
    assert len(ledger_rows(second, "operations")) == 1


_CHILD = """
import asyncio, json, sys
from pathlib import Path
from payops.config import Settings
from payops.connectors.base import ConnectorConfig, OperationRequest, PaymentRef
from payops.connectors.sandbox.connector import SandboxConnector

args = json.loads(sys.argv[1])
settings = Settings(data_dir=Path(args["data_dir"]), sandbox_queue_seconds=0.2)
sandbox = SandboxConnector(ConnectorConfig("child", True, {},
                                           deployment=SandboxConnector.deployment(settings)))
pay = PaymentRef(args["payment"], 25000, "KWD", "purchase")
op = OperationRequest("refund", args["operation"], 10993, "KWD", pay)

async def main():
    payment = await sandbox.inquire_payment(pay)
    operation = await sandbox.inquire_operation(op)
    refund = await sandbox.refund(OperationRequest("refund", args["new"], 1000, "KWD", pay))
    print(json.dumps([payment.outcome.value, operation.outcome.value, refund.outcome.value]))

asyncio.run(main())
"""


async def test_another_process_sees_the_records(
    sandbox: SandboxConnector, sandbox_settings: Settings
) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    lost = request("refund", pay, 10_993)
    assert (await sandbox.refund(lost)).outcome is Outcome.UNKNOWN
    new_ref = new_reference_number()
    args = json.dumps(
        {
            "data_dir": str(sandbox_settings.data_dir),
            "payment": pay.reference_number,
            "operation": lost.reference_number,
            "new": new_ref,
        }
    )
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _CHILD, args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["success", "success", "success"]
    # ... and this process sees what the other one did.
    done = await sandbox.inquire_operation(request("refund", pay, 1_000, ref=new_ref))
    assert done.outcome is Outcome.SUCCESS
    assert done.raw["amount"] == "1.000"


# -- its file: shared with other processes, never holding the event loop ----------------------


async def test_a_ledger_locked_by_another_process_never_holds_the_event_loop(
    sandbox: SandboxConnector,
) -> None:
    pay = await paid(sandbox, "purchase", 25_000)
    # Another process in the middle of its own operation holds the file's write lock for 1 s.
    other = sqlite3.connect(sandbox.ledger.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    release = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    release.start()
    try:
        refund = asyncio.create_task(sandbox.refund(request("refund", pay, 1_000)))
        gaps = []
        for _ in range(10):
            before = time.monotonic()
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - before)
        assert not refund.done()  # it waits for the lock, elsewhere than on the event loop
        assert max(gaps) < 0.5
        result = await refund
    finally:
        release.join()
        other.close()
    assert result.outcome is Outcome.SUCCESS
    assert [r["amount"] for r in ledger_rows(sandbox, "operations")] == [1_000]


async def test_a_lock_held_for_a_moment_is_waited_for_on_the_event_loop(
    sandbox: SandboxConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another PayOps process writes the file for a fraction of a millisecond at a time: the
    call is tried again on the event loop rather than handed to a thread, whose connection
    would sleep in SQLite's busy handler (1, 2, 5, 10 ms...) and make the latency's tail."""
    pay = await paid(sandbox, "purchase", 25_000)
    thread_calls: list[dict[str, Any]] = []
    monkeypatch.setattr(sandbox.ledger, "perform", lambda **call: thread_calls.append(call))
    other = sqlite3.connect(sandbox.ledger.path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    # Released by the event loop itself, before the connector's pauses (16.5 ms) run out.
    asyncio.get_running_loop().call_later(0.003, other.execute, "COMMIT")
    try:
        result = await sandbox.refund(request("refund", pay, 1_000))
    finally:
        other.close()
    assert result.outcome is Outcome.SUCCESS
    assert thread_calls == []
    assert [r["amount"] for r in ledger_rows(sandbox, "operations")] == [1_000]


async def test_back_to_back_operations_keep_the_ledger_files_small(
    sandbox: SandboxConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 20 instead of 200 calls between the background checkpoints, to keep the test short.
    monkeypatch.setattr(SandboxLedger, "CHECKPOINT_EVERY", 20)
    pay = await paid(sandbox, "purchase", 10**9)
    for _ in range(400):
        assert (await sandbox.refund(request("refund", pay, 1_000))).outcome is Outcome.SUCCESS
    # Each operation adds about 12 KiB to the WAL: 400 of them without a checkpoint that lets
    # the WAL start over would make it about 5 MB.
    wal = sandbox.ledger.path.with_name(sandbox.ledger.path.name + "-wal")
    assert wal.stat().st_size < 1_000_000
    assert len(ledger_rows(sandbox, "operations")) == 400
    over = await sandbox.refund(request("refund", pay, 10**9 - 400_000 + 1))
    assert over.message == "Refund exceeds the captured amount"


def test_a_ledger_written_before_the_totals_keeps_its_limits(tmp_path: Path) -> None:
    """A ledger file from before the running totals (and with its former index by payment)."""
    path = tmp_path / "sandbox-gateway.sqlite3"
    pay = payment(25_000)
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE payments (
                reference TEXT PRIMARY KEY, amount INTEGER NOT NULL, currency TEXT NOT NULL,
                mode TEXT NOT NULL, status TEXT NOT NULL, card_last4 TEXT NOT NULL,
                created REAL NOT NULL);
            CREATE TABLE operations (
                reference TEXT PRIMARY KEY, payment_reference TEXT NOT NULL,
                operation TEXT NOT NULL, amount INTEGER NOT NULL, currency TEXT NOT NULL,
                status TEXT NOT NULL, transaction_id TEXT NOT NULL, created REAL NOT NULL);
            CREATE INDEX operations_by_payment ON operations (payment_reference);
            """
        )
        conn.execute(
            "INSERT INTO payments VALUES (?, 25000, 'KWD', 'purchase', 'success', '1111', 0)",
            (pay.reference_number,),
        )
        conn.execute(
            "INSERT INTO operations VALUES ('old', ?, 'refund', 20000, 'KWD', 'done', 'a', 0)",
            (pay.reference_number,),
        )
    sandbox = make_connector(make_settings(tmp_path))

    async def refunds() -> tuple[GatewayResult, GatewayResult]:
        over = await sandbox.refund(request("refund", pay, 5_001))
        rest = await sandbox.refund(request("refund", pay, 5_000))
        return over, rest

    over, rest = asyncio.run(refunds())
    assert over.message == "Refund exceeds the captured amount"
    assert rest.outcome is Outcome.SUCCESS
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == [
            ("sqlite_autoindex_payments_1",),
            ("sqlite_autoindex_operations_1",),
            ("payment_inquiries_by_payment",),
            ("sqlite_autoindex_totals_1",),
        ]
