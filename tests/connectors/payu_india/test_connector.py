"""PayU India: the pure protocol code, then the connector against the fake postservice."""

from __future__ import annotations

import hashlib
import logging
from typing import Any
from urllib.parse import parse_qsl

import pytest

from payops.connectors.base import (
    ConnectorConfig,
    NotificationRejected,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.payu_india import transformers as t
from payops.connectors.payu_india.connector import PayuIndiaConnector
from payops.connectors.registry import connector_class
from tests.connectors.payu_india import fake_server
from tests.connectors.payu_india.fake_server import MERCHANT_KEY, SALT, FakePayu
from tests.helpers import operation_request

fake_payu = fake_server.fake_payu


# -- pure protocol -----------------------------------------------------------------------------


def test_hash_is_sha512_of_key_command_var1_salt() -> None:
    expected = hashlib.sha512(b"K1|verify_payment|TXN-9|S1").hexdigest()
    assert t.command_hash("K1", "verify_payment", "TXN-9", "S1") == expected
    form = t.command_form("K1", "S1", "cancel_refund_transaction", "4039", "TOKEN1", "150.00")
    assert form == {
        "key": "K1",
        "command": "cancel_refund_transaction",
        "var1": "4039",
        "var2": "TOKEN1",
        "var3": "150.00",
        "hash": t.command_hash("K1", "cancel_refund_transaction", "4039", "S1"),
    }
    assert t.hash_matches(form, "S1") and not t.hash_matches(form, "S2")
    assert not t.hash_matches({**form, "var1": "4040"}, "S1")


def test_token_and_amount_rules() -> None:
    assert t.token("A" * 23) == "A" * 23
    with pytest.raises(t.PayuFormatError):
        t.token("A" * 24)
    assert t.payu_amount(15_000, "INR") == "150.00"
    with pytest.raises(t.PayuFormatError):
        t.payu_amount(0, "INR")


@pytest.mark.parametrize(
    ("body", "outcome"),
    [
        (
            {"status": 1, "msg": "Refund Request Queued", "request_id": "1", "error_code": 102},
            Outcome.PENDING,
        ),
        (
            {
                "status": 1,
                "msg": "Cancel Request Queued",
                "txn_update_id": "7",
                "error_code": "102",
            },
            Outcome.PENDING,
        ),
        ({"status": 1, "msg": "ok", "error_code": 100}, Outcome.SUCCESS),
        (
            {"status": 0, "msg": "Refund FAILURE - Transaction Not Found", "error_code": 116},
            Outcome.FAILED,
        ),
        ({"status": 0, "msg": "Token already exists", "error_code": 106}, Outcome.UNKNOWN),
        ({"status": 0, "msg": "already logged", "error_code": 109}, Outcome.UNKNOWN),
        ({"status": 0, "msg": "same amount", "error_code": 214}, Outcome.FAILED),
        ({"status": 1, "msg": "capture today", "error_code": 226}, Outcome.PENDING),
        ({"status": 1, "msg": "new", "error_code": 999}, Outcome.PENDING),  # never success
        ({"status": "x", "msg": "?"}, Outcome.UNKNOWN),
    ],
)
def test_command_outcomes(body: dict[str, Any], outcome: Outcome) -> None:
    reply = t.parse_command_reply(body)
    assert reply is not None and t.command_outcome(reply) == outcome


def test_action_status_maps_case_insensitively_defaulting_to_pending() -> None:
    assert t.action_outcome("SUCCESS") == t.action_outcome("success") == Outcome.SUCCESS
    assert t.action_outcome("FAILURE") == Outcome.FAILED
    for status in ("QUEUED", "queued", "IN PROGRESS", "REQUESTED", "od_hit", "brand new"):
        assert t.action_outcome(status) == Outcome.PENDING
    nested = {
        "status": 1,
        "transaction_details": {
            "4039": {
                "1378": {
                    "request_id": "1378",
                    "action": "refund",
                    "token": "T1",
                    "amt": "23.00",
                    "status": "queued",
                }
            }
        },
    }
    actions = t.parse_actions(nested)
    assert actions is not None and [(a.request_id, a.token, a.amount) for a in actions] == [
        ("1378", "T1", "23.00")
    ]
    assert t.parse_actions({"status": 0, "msg": "No action status found"}) == []
    assert t.parse_actions({"status": 0, "msg": "Invalid Hash."}) is None  # says nothing
    assert t.parse_actions("junk") is None


def test_payment_status_map() -> None:
    def status(s: str, u: str, mode: str = "purchase") -> Outcome:
        parsed = t.parse_payment(
            {"transaction_details": {"T": {"mihpayid": "1", "status": s, "unmappedstatus": u}}}, "T"
        )
        assert parsed is not None
        return t.payment_outcome(parsed, mode)

    assert status("success", "captured") == Outcome.SUCCESS
    assert status("success", "auth", "authorize") == Outcome.SUCCESS
    assert status("success", "auth") == Outcome.PENDING
    assert status("failure", "bounced") == Outcome.FAILED
    assert status("pending", "userCancelled") == Outcome.FAILED
    assert status("pending", "pending") == Outcome.PENDING
    assert status("Not Found", "") == Outcome.PENDING
    assert status("weird", "weird") == Outcome.PENDING


# -- connector against the fake ----------------------------------------------------------------


def connector(fake: FakePayu, *, salt: str = SALT, timeout: float = 5.0) -> PayuIndiaConnector:
    return PayuIndiaConnector(
        ConnectorConfig(
            pg_code="payu-inr",
            is_sandbox=True,
            timeout_seconds=timeout,
            credentials={"merchant_key": MERCHANT_KEY, "salt": salt},
            options={"base_url": fake.url},
        )
    )


def payment(
    mihpayid: str, amount: int = 50_000, mode: str = "purchase", txnid: str = "TXN0001"
) -> PaymentRef:
    return PaymentRef(txnid, amount, "INR", mode, {"mihpayid": mihpayid, "txnid": txnid})


def op(
    kind: str, amount: int, pay: PaymentRef, reference: str = "REF0001", **refs: Any
) -> OperationRequest:
    return operation_request(kind, amount, pay, reference=reference, currency="INR", **refs)


def test_registry_and_capabilities() -> None:
    cls = connector_class("payu_india")
    assert cls is PayuIndiaConnector
    assert cls.capabilities == {"capture", "refund", "void", "inquiry"}
    assert cls.default_operations("purchase") == {"refund", "inquiry"}
    assert cls.required_credentials == ("merchant_key", "salt")


async def test_refund_is_queued_then_followed_to_success(
    fake_payu: FakePayu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    mihpayid = fake_payu.add_payment("TXN0001", "500.00")
    gateway = connector(fake_payu)
    try:
        queued = await gateway.refund(op("refund", 15_000, payment(mihpayid)))
        sent = fake_payu.requests[-1]
        request_id = queued.gateway_refs["request_id"]
        still = await gateway.inquire_operation(
            op("refund", 15_000, payment(mihpayid), request_id=request_id)
        )
        fake_payu.settle_action(request_id, "SUCCESS")
        done = await gateway.inquire_operation(
            op("refund", 15_000, payment(mihpayid), request_id=request_id)
        )
    finally:
        await gateway.aclose()
    assert queued.outcome == Outcome.PENDING and queued.message.startswith("PayU 102")
    assert sent.path == "/merchant/postservice.php" and sent.query == "form=2"
    assert sent.header("Content-Type") == "application/x-www-form-urlencoded"
    assert dict(parse_qsl(sent.body.decode())) == {
        "key": MERCHANT_KEY,
        "command": "cancel_refund_transaction",
        "var1": mihpayid,
        "var2": "REF0001",
        "var3": "150.00",
        "hash": hashlib.sha512(
            f"{MERCHANT_KEY}|cancel_refund_transaction|{mihpayid}|{SALT}".encode()
        ).hexdigest(),
    }
    assert still.outcome == Outcome.PENDING
    assert done.outcome == Outcome.SUCCESS
    assert SALT not in str(queued) + str(done) + caplog.text


async def test_a_lost_reply_is_found_again_by_token_never_resent(fake_payu: FakePayu) -> None:
    mihpayid = fake_payu.add_payment("TXN0001", "500.00")
    fake_payu.fail_next("reset", apply=True)
    gateway = connector(fake_payu, timeout=0.5)
    try:
        lost = await gateway.refund(op("refund", 10_000, payment(mihpayid)))
        found = await gateway.inquire_operation(op("refund", 10_000, payment(mihpayid)))
        fake_payu.fail_next("timeout")  # nothing reaches PayU's books
        never = await gateway.refund(op("refund", 5_000, payment(mihpayid), "REF0002"))
        absent = await gateway.inquire_operation(op("refund", 5_000, payment(mihpayid), "REF0002"))
    finally:
        await gateway.aclose()
    assert lost.outcome == Outcome.UNKNOWN
    assert found.outcome == Outcome.PENDING and found.gateway_refs["request_id"]
    assert never.outcome == Outcome.UNKNOWN
    assert absent.outcome == Outcome.FAILED
    assert len(fake_payu.actions(mihpayid)) == 1
    assert [dict(parse_qsl(r.body.decode()))["command"] for r in fake_payu.requests].count(
        "cancel_refund_transaction"
    ) == 2  # one per operation, none resent


async def test_void_cancels_the_full_authorisation_and_capture_is_queued(
    fake_payu: FakePayu,
) -> None:
    first = fake_payu.add_payment("TXNA", "800.00", state="auth")
    second = fake_payu.add_payment("TXNB", "300.00", state="auth")
    gateway = connector(fake_payu)
    try:
        void = await gateway.void(op("void", 80_000, payment(first, 80_000, "authorize", "TXNA")))
        update_id = void.gateway_refs["txn_update_id"]
        fake_payu.settle_action(update_id, "SUCCESS")
        voided = await gateway.inquire_operation(
            op("void", 80_000, payment(first, 80_000, "authorize", "TXNA"), txn_update_id=update_id)
        )
        capture = await gateway.capture(
            op("capture", 20_000, payment(second, 30_000, "authorize", "TXNB"), "C1")
        )
        over = await gateway.capture(
            op("capture", 20_000, payment(second, 30_000, "authorize", "TXNB"), "C2")
        )
    finally:
        await gateway.aclose()
    assert void.outcome == Outcome.PENDING
    sent = dict(parse_qsl(fake_payu.requests[0].body.decode()))
    assert (sent["command"], sent["var3"]) == ("cancel_refund_transaction", "800.00")
    assert voided.outcome == Outcome.SUCCESS
    assert capture.outcome == Outcome.PENDING and capture.gateway_refs["request_id"]
    assert over.outcome == Outcome.FAILED and "109" in over.message


async def test_refusals_and_faults(fake_payu: FakePayu) -> None:
    mihpayid = fake_payu.add_payment("TXN0001", "100.00")
    gateway = connector(fake_payu)
    try:
        over = await gateway.refund(op("refund", 20_000, payment(mihpayid), "R1"))
        missing = await gateway.refund(op("refund", 1_000, payment("999"), "R2"))
        fake_payu.fail_next("decline", message="214")
        five_minutes = await gateway.refund(op("refund", 1_000, payment(mihpayid), "R3"))
        fake_payu.fail_next("500")
        error = await gateway.refund(op("refund", 1_000, payment(mihpayid), "R4"))
        fake_payu.fail_next("malformed")
        garbled = await gateway.refund(op("refund", 1_000, payment(mihpayid), "R5"))
        no_id = await gateway.refund(op("refund", 1_000, PaymentRef("T", 1, "INR", "purchase")))
    finally:
        await gateway.aclose()
    bad_salt = connector(fake_payu, salt="wrong")
    try:
        forged = await bad_salt.refund(op("refund", 1_000, payment(mihpayid), "R6"))
    finally:
        await bad_salt.aclose()
    assert over.outcome == Outcome.FAILED and "105" in over.message
    assert missing.outcome == Outcome.FAILED and "116" in missing.message
    assert five_minutes.outcome == Outcome.FAILED and "214" in five_minutes.message
    assert error.outcome == Outcome.UNKNOWN and garbled.outcome == Outcome.UNKNOWN
    assert no_id.outcome == Outcome.FAILED
    assert forged.outcome == Outcome.FAILED and "Invalid Hash" in forged.message
    assert fake_payu.actions(mihpayid) == []


async def test_payment_inquiry(fake_payu: FakePayu) -> None:
    mihpayid = fake_payu.add_payment("TXN0009", "250.00")
    gateway = connector(fake_payu)
    try:
        paid = await gateway.inquire_payment(payment(mihpayid, 25_000, txnid="TXN0009"))
        absent = await gateway.inquire_payment(payment("1", 25_000, txnid="NOPE"))
    finally:
        await gateway.aclose()
    assert paid.outcome == Outcome.SUCCESS and paid.amount == 25_000
    assert paid.gateway_refs["mihpayid"] == mihpayid
    assert absent.outcome == Outcome.PENDING
    assert dict(parse_qsl(fake_payu.requests[0].body.decode()))["var1"] == "TXN0009"


def test_refund_callback_is_only_a_hint(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    notice = gateway.parse_notification(
        {}, b'{"mihpayid": 4039, "request_id": "1", "token": "REF0001", "status": "success"}'
    )
    assert notice.reference == "REF0001" and notice.gateway_refs == {"mihpayid": "4039"}
    with pytest.raises(NotificationRejected):
        gateway.parse_notification({}, b"not json")
    with pytest.raises(NotificationRejected):
        gateway.parse_notification({}, b'{"mihpayid": "1", "key": "someone-else"}')
