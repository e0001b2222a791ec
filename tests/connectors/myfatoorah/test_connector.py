"""The MyFatoorah connector against the fake MyFatoorah over real loopback HTTP."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import logging
from decimal import Decimal
from typing import Any

import httpx
import pytest

from payops.connectors import kit
from payops.connectors.base import (
    ConnectorConfig,
    GatewayResult,
    Notification,
    NotificationRejected,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.myfatoorah import transformers
from payops.connectors.myfatoorah.connector import MyFatoorahConnector
from payops.connectors.myfatoorah.notifications import (
    MyFatoorahWebhookError,
    parse_notification,
    verify_and_parse,
    verify_signature,
)
from payops.connectors.registry import connector_class
from tests.connectors.myfatoorah import fake_server
from tests.connectors.myfatoorah.fake_server import (
    MASKED_CARD,
    TEST_API_TOKEN,
    WRONG_API_TOKEN,
    FakeMyFatoorah,
    already_updated_response,
    capture_exceeds_response,
    invalid_key_response,
    not_authorized_response,
    refund_exceeds_response,
    refund_not_paid_response,
)
from tests.helpers import inquire_once, once, operation_request, run_once

fake_myfatoorah = fake_server.fake_myfatoorah  # the fake's fixture, used by this module

GET_PAYMENT_STATUS = "/v2/GetPaymentStatus"
UPDATE_PAYMENT_STATUS = "/v2/UpdatePaymentStatus"
MAKE_REFUND = "/v2/MakeRefund"
GET_REFUND_STATUS = "/v2/GetRefundStatus"
FAULT_TIMEOUT = 0.5


def connector_for(
    fake: FakeMyFatoorah,
    *,
    token: str | None = TEST_API_TOKEN,
    timeout: float = 20.0,
    options: dict[str, Any] | None = None,
    sandbox: bool = True,
) -> MyFatoorahConnector:
    credentials = {"api_token": token} if token is not None else {}
    return MyFatoorahConnector(
        ConnectorConfig(
            pg_code="myfatoorah-kwd",
            is_sandbox=sandbox,
            credentials=credentials,
            timeout_seconds=timeout,
            options={"base_url": fake.url, **(options or {})},
        )
    )


def payment(
    invoice_id: str | None,
    *,
    amount: int = 100_000,
    currency: str = "KWD",
    mode: str = "purchase",
    refs: dict[str, Any] | None = None,
) -> PaymentRef:
    if refs is None:
        refs = {"invoice_id": invoice_id} if invoice_id else {}
    return PaymentRef(
        reference_number="PAYREF0000000001",
        amount=amount,
        currency_code=currency,
        operation_mode=mode,
        gateway_refs=refs,
    )


def op(
    operation: str, pay: PaymentRef, amount: int, reference: str | None = None
) -> OperationRequest:
    return operation_request(operation, amount, pay, reference=reference)


run, inquire = run_once, inquire_once


async def inquire_payment(connector: MyFatoorahConnector, pay: PaymentRef) -> GatewayResult:
    return await once(connector, connector.inquire_payment(pay))


def assert_sent(
    recorded: fake_server.RecordedRequest, body: dict[str, Any], token: str = TEST_API_TOKEN
) -> None:
    assert recorded.method == "POST"
    assert recorded.header("Authorization") == f"Bearer {token}"
    assert recorded.header("Content-Type") == "application/json"
    assert recorded.json == body


# -- declaration ----------------------------------------------------------------------------------


def test_registered_with_its_capabilities_and_credentials() -> None:
    cls = connector_class("myfatoorah")
    assert cls is MyFatoorahConnector
    assert cls.capabilities == frozenset({"capture", "refund", "void", "inquiry"})
    assert cls.required_credentials == ("api_token",)


@pytest.mark.parametrize(
    ("sandbox", "country", "host"),
    [
        (True, "", "https://apitest.myfatoorah.com"),
        (True, "SAU", "https://apitest.myfatoorah.com"),
        (False, "KWT", "https://api.myfatoorah.com"),
        (False, "bhr", "https://api.myfatoorah.com"),
        (False, "OMN", "https://api.myfatoorah.com"),
        (False, "JOR", "https://api.myfatoorah.com"),
        (False, "SAU", "https://api-sa.myfatoorah.com"),
        (False, "ARE", "https://api-ae.myfatoorah.com"),
        (False, "QAT", "https://api-qa.myfatoorah.com"),
        (False, "EGY", "https://api-eg.myfatoorah.com"),
        (False, "", None),
    ],
)
def test_host_follows_sandbox_flag_and_country(
    sandbox: bool, country: str, host: str | None
) -> None:
    options = {"country": country} if country else {}
    connector = MyFatoorahConnector(
        ConnectorConfig("mf", sandbox, {"api_token": "t"}, options=options)
    )
    assert connector._base_url() == host
    override = MyFatoorahConnector(
        ConnectorConfig(
            "mf", sandbox, {"api_token": "t"}, options={**options, "base_url": "http://x:1/"}
        )
    )
    assert override._base_url() == "http://x:1"


# -- refund ---------------------------------------------------------------------------------------


async def test_refund_creates_a_refund_request_answered_as_queued(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", "KWD")
    request = op("refund", payment(invoice), 25_500)

    result = await run(connector_for(fake_myfatoorah), request)

    lookup, created = fake_myfatoorah.requests
    assert lookup.path == GET_REFUND_STATUS
    assert_sent(lookup, {"KeyType": "InvoiceId", "Key": invoice})
    assert created.path == MAKE_REFUND
    assert_sent(
        created,
        {
            "KeyType": "InvoiceId",
            "Key": invoice,
            "Amount": Decimal("25.500"),
            "Comment": f"PayOps refund {request.reference_number}",
            "ServiceChargeOnCustomer": False,
            "RefundChargeOnCustomer": False,
            "ExternalIdentifier": request.reference_number,
        },
    )
    assert b'"Amount":25.500,' in created.body  # a JSON number with the currency's 3 decimals
    refund = fake_myfatoorah.refunds(invoice)[0]
    assert result.outcome == Outcome.PENDING
    assert result.message == "Refund request created; MyFatoorah will review and execute it"
    assert result.pg_params == {
        "ref": request.reference_number,
        "result": "queued",
        "pg_message": result.message,
        "transaction_id": str(refund["RefundId"]),
        "receipt_no": refund["RefundReference"],
    }
    assert result.gateway_refs == {
        "invoice_id": invoice,
        "refund_id": str(refund["RefundId"]),
        "refund_reference": refund["RefundReference"],
        "refund_invoice_id": str(
            fake_myfatoorah.invoices[int(invoice)].refunds[0].refund_invoice_id
        ),
    }
    assert created.header("Idempotency-Key") == request.reference_number
    assert result.raw["IsSuccess"] is True
    assert result.raw["Message"] == "Refund Created Successfully!"
    assert result.raw["Data"]["Amount"] == "25.500"  # kept exact, never a float
    assert refund["RefundStatus"] == "Pending"
    assert refund["ExternalIdentifier"] == request.reference_number


@pytest.mark.parametrize(
    ("currency", "total", "minor", "literal"),
    [
        ("KWD", "100.000", 1_005, b'"Amount":1.005,'),
        ("KWD", "100.000", 7_000, b'"Amount":7.000,'),
        ("SAR", "80.00", 1_050, b'"Amount":10.50,'),
        ("BHD", "20.000", 19_999, b'"Amount":19.999,'),
    ],
)
async def test_refund_amount_is_exact_major_units(
    fake_myfatoorah: FakeMyFatoorah, currency: str, total: str, minor: int, literal: bytes
) -> None:
    invoice = fake_myfatoorah.add_invoice(total, currency)
    pay = payment(invoice, currency=currency)
    result = await run(connector_for(fake_myfatoorah), op("refund", pay, minor))
    assert result.outcome == Outcome.PENDING
    assert literal in fake_myfatoorah.requests_to(MAKE_REFUND)[0].body


async def test_refund_on_an_auto_refund_account_is_final_at_once(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    fake_myfatoorah.auto_refund = True
    invoice = fake_myfatoorah.add_invoice("100.000")
    request = op("refund", payment(invoice), 10_000)

    result = await run(connector_for(fake_myfatoorah, options={"auto_refund": "true"}), request)

    refund = fake_myfatoorah.refunds(invoice)[0]
    follow_up = fake_myfatoorah.requests[-1]
    assert follow_up.path == GET_REFUND_STATUS
    assert_sent(follow_up, {"KeyType": "RefundId", "Key": str(refund["RefundId"])})
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Refunded"
    assert result.pg_params["rrn"] == refund["RRN"]
    assert result.raw["Data"]["RefundStatusResult"][0]["RefundStatus"] == "Refunded"


async def test_refund_beyond_what_remains_is_refused_by_the_gateway(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.add_refund(invoice, "80.000")  # pending refunds count against the invoice

    result = await run(connector_for(fake_myfatoorah), op("refund", payment(invoice), 30_000))

    assert result.outcome == Outcome.FAILED
    assert result.message == refund_exceeds_response()["Message"]
    assert result.raw == refund_exceeds_response()
    assert result.pg_params == {
        "ref": result.pg_params["ref"],
        "result": "declined",
        "pg_message": result.message,
    }
    assert len(fake_myfatoorah.refunds(invoice)) == 1
    # a canceled refund gives its amount back
    fake_myfatoorah.settle_refund(invoice, "Canceled")
    again = await run(connector_for(fake_myfatoorah), op("refund", payment(invoice), 100_000))
    assert again.outcome == Outcome.PENDING


async def test_refund_of_an_invoice_that_is_not_paid_is_refused(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    result = await run(connector_for(fake_myfatoorah), op("refund", payment(invoice), 1_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == refund_not_paid_response()["Message"]


async def test_refund_of_an_unknown_invoice_is_refused(fake_myfatoorah: FakeMyFatoorah) -> None:
    result = await run(connector_for(fake_myfatoorah), op("refund", payment("999"), 1_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == invalid_key_response()["Message"]
    assert result.raw == invalid_key_response()


async def test_refund_already_made_under_this_reference_is_not_made_again(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    request = op("refund", payment(invoice), 5_000)
    fake_myfatoorah.add_refund(invoice, "5.000", external_identifier=request.reference_number)

    result = await run(connector_for(fake_myfatoorah), request)

    assert result.outcome == Outcome.PENDING
    assert fake_myfatoorah.requests_to(MAKE_REFUND) == []
    assert len(fake_myfatoorah.refunds(invoice)) == 1
    fake_myfatoorah.settle_refund(invoice, "Refunded")
    assert (await run(connector_for(fake_myfatoorah), request)).outcome == Outcome.SUCCESS
    assert fake_myfatoorah.requests_to(MAKE_REFUND) == []


async def test_refund_of_a_payment_known_by_its_payment_id(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    payment_id = fake_myfatoorah.payment_id(invoice)
    pay = payment(None, refs={"payment_id": payment_id})

    result = await run(connector_for(fake_myfatoorah), op("refund", pay, 2_000))

    lookup, listing, created = fake_myfatoorah.requests
    assert_sent(lookup, {"Key": payment_id, "KeyType": "PaymentId"})
    assert lookup.path == GET_PAYMENT_STATUS
    assert_sent(listing, {"KeyType": "InvoiceId", "Key": invoice})
    assert created.json["KeyType"] == "InvoiceId"
    assert created.json["Key"] == invoice
    assert result.outcome == Outcome.PENDING


async def test_an_unreadable_refund_list_does_not_stop_the_refund(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.fail_next("500", endpoint=GET_REFUND_STATUS)
    result = await run(connector_for(fake_myfatoorah), op("refund", payment(invoice), 2_000))
    assert result.outcome == Outcome.PENDING
    assert len(fake_myfatoorah.requests_to(MAKE_REFUND)) == 1


async def test_the_gateway_has_no_idempotency_so_a_duplicate_is_flagged(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    """Sent twice outside the connector, one reference makes two refunds at MyFatoorah; the
    connector's inquiry then cannot tell which is PayOps's and asks for a human."""
    invoice = fake_myfatoorah.add_invoice("100.000")
    body = {"KeyType": "InvoiceId", "Key": invoice, "Amount": 1, "ExternalIdentifier": "DUP1"}
    async with httpx.AsyncClient() as http:
        for _ in range(2):
            reply = await http.post(
                f"{fake_myfatoorah.url}{MAKE_REFUND}",
                json=body,
                headers={"Authorization": f"Bearer {TEST_API_TOKEN}"},
            )
            assert reply.json()["IsSuccess"] is True
    assert len(fake_myfatoorah.refunds(invoice)) == 2

    result = await inquire(
        connector_for(fake_myfatoorah), op("refund", payment(invoice), 1_000, reference="DUP1")
    )
    assert result.outcome == Outcome.UNKNOWN
    assert result.message == "MyFatoorah lists 2 refunds with reference DUP1"


# -- capture --------------------------------------------------------------------------------------


async def test_partial_capture(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    request = op("capture", payment(invoice, mode="authorize"), 40_000)

    result = await run(connector_for(fake_myfatoorah), request)

    (sent,) = fake_myfatoorah.requests
    assert sent.path == UPDATE_PAYMENT_STATUS
    assert_sent(
        sent,
        {
            "Operation": "capture",
            "Amount": Decimal("40.000"),
            "Key": invoice,
            "KeyType": "InvoiceId",
        },
    )
    assert b'"Amount":40.000,' in sent.body
    shown = fake_myfatoorah.invoice(invoice)
    captured = shown["InvoiceTransactions"][-1]
    assert shown["InvoiceStatus"] == "Paid"
    assert shown["InvoiceValue"] == Decimal("40.000")
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Captured"
    assert result.pg_params == {
        "ref": request.reference_number,
        "result": "success",
        "pg_message": "Captured",
        "payment_id": captured["PaymentId"],
        "transaction_id": captured["TransactionId"],
        "auth_code": captured["AuthorizationId"],
        "rrn": captured["ReferenceId"],
        "track_id": captured["TrackId"],
        "card_type": "VISA/MASTER",
        "card_number": MASKED_CARD,
        "post_date": captured["TransactionDate"],
    }
    assert result.gateway_refs == {"invoice_id": invoice, "payment_id": captured["PaymentId"]}
    assert result.raw["Data"]["InvoiceValue"] == "40.000"


async def test_capture_in_a_two_decimal_currency(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("75.50", "SAR", state="authorized")
    pay = payment(invoice, amount=7_550, currency="SAR", mode="authorize")
    result = await run(connector_for(fake_myfatoorah), op("capture", pay, 7_550))
    assert result.outcome == Outcome.SUCCESS
    assert b'"Amount":75.50,' in fake_myfatoorah.requests[0].body


async def test_capture_beyond_the_authorization_is_refused(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    result = await run(
        connector_for(fake_myfatoorah), op("capture", payment(invoice, mode="authorize"), 100_001)
    )
    assert result.outcome == Outcome.FAILED
    assert result.message == capture_exceeds_response()["Message"]
    assert fake_myfatoorah.invoice(invoice)["InvoiceStatus"] == "Pending"


async def test_only_one_capture_per_invoice(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    pay = payment(invoice, mode="authorize")
    assert (
        await run(connector_for(fake_myfatoorah), op("capture", pay, 10_000))
    ).outcome == Outcome.SUCCESS
    second = await run(connector_for(fake_myfatoorah), op("capture", pay, 10_000))
    assert second.outcome == Outcome.FAILED
    assert second.message == already_updated_response()["Message"]


async def test_capture_of_a_purchase_is_refused(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="paid")
    result = await run(connector_for(fake_myfatoorah), op("capture", payment(invoice), 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == not_authorized_response()["Message"]


# -- void (release) -------------------------------------------------------------------------------


async def test_void_releases_the_authorization(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    request = op("void", payment(invoice, mode="authorize"), 100_000)

    result = await run(connector_for(fake_myfatoorah), request)

    (sent,) = fake_myfatoorah.requests
    assert sent.path == UPDATE_PAYMENT_STATUS
    assert_sent(
        sent,
        {
            "Operation": "release",
            "Amount": Decimal("100.000"),
            "Key": invoice,
            "KeyType": "InvoiceId",
        },
    )
    released = fake_myfatoorah.invoice(invoice)["InvoiceTransactions"][-1]
    assert released["TransactionStatus"] == "Canceled"
    assert released["Error"] == "Transaction Released"
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Released"
    assert result.pg_params["transaction_id"] == released["TransactionId"]


async def test_void_after_a_capture_is_refused(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    pay = payment(invoice, mode="authorize")
    await run(connector_for(fake_myfatoorah), op("capture", pay, 100_000))
    result = await run(connector_for(fake_myfatoorah), op("void", pay, 100_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == already_updated_response()["Message"]


async def test_release_of_less_than_the_invoice_is_refused(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    result = await run(
        connector_for(fake_myfatoorah), op("void", payment(invoice, mode="authorize"), 50_000)
    )
    assert result.outcome == Outcome.FAILED
    assert result.message == "The amount has to be equal to the invoice value"


# -- refusals and faults --------------------------------------------------------------------------


async def test_a_wrong_token_is_refused(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    result = await run(
        connector_for(fake_myfatoorah, token=WRONG_API_TOKEN),
        op("capture", payment(invoice, mode="authorize"), 1_000),
    )
    assert result.outcome == Outcome.FAILED
    assert result.message == "MyFatoorah rejected the API token"
    assert result.raw == {"status_code": 401, "body": ""}
    assert fake_myfatoorah.requests[0].header("Authorization") == f"Bearer {WRONG_API_TOKEN}"
    inquiry = await inquire_payment(
        connector_for(fake_myfatoorah, token=WRONG_API_TOKEN), payment(invoice)
    )
    assert inquiry.outcome == Outcome.UNKNOWN  # a refused inquiry says nothing of the payment


@pytest.mark.parametrize("case", ["no_token", "no_refs", "live_without_country"])
async def test_what_cannot_be_sent_is_refused_without_a_call(
    fake_myfatoorah: FakeMyFatoorah, case: str
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    pay = payment(None if case == "no_refs" else invoice)
    if case == "live_without_country":
        connector = MyFatoorahConnector(ConnectorConfig("mf", False, {"api_token": "t"}))
    else:
        connector = connector_for(
            fake_myfatoorah, token=None if case == "no_token" else TEST_API_TOKEN
        )
    result = await run(connector, op("refund", pay, 1_000))
    assert result.outcome == Outcome.FAILED
    assert fake_myfatoorah.requests == []
    assert (await inquire_payment(connector, pay)).outcome == Outcome.UNKNOWN


async def test_an_unknown_currency_is_refused_without_a_call(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    for operation in ("refund", "capture", "void"):
        result = await run(
            connector_for(fake_myfatoorah), op(operation, payment(invoice, currency="XXZ"), 1_000)
        )
        assert result.outcome == Outcome.FAILED
        assert result.message == "Currency 'XXZ' cannot be sent to MyFatoorah"
    assert fake_myfatoorah.requests == []


@pytest.mark.parametrize("status", [400, 200])
async def test_a_decline_carries_the_gateway_message(
    fake_myfatoorah: FakeMyFatoorah, status: int
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.fail_next(
        "decline",
        endpoint=MAKE_REFUND,
        status=status,
        message="Refunds are disabled for this account",
    )
    result = await run(connector_for(fake_myfatoorah), op("refund", payment(invoice), 1_000))
    assert result.outcome == Outcome.FAILED  # IsSuccess decides, not the HTTP status
    assert result.message == "Refunds are disabled for this account"
    assert result.raw["IsSuccess"] is False


async def test_validation_errors_become_the_message(fake_myfatoorah: FakeMyFatoorah) -> None:
    """A refusal's own words are the message; ValidationErrors read as ``Name: Error``."""
    pay = payment(None, refs={"invoice_id": "not-a-number"})
    result = await run(connector_for(fake_myfatoorah), op("refund", pay, 1_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == "Invalid Key"
    envelope = transformers.Envelope.model_validate(
        fake_server.validation_error_response(
            ("Amount", "The Amount must be a number."), ("Key", "The Key field is required.")
        )
    )
    assert envelope.error_message() == (
        "Amount: The Amount must be a number., Key: The Key field is required."
    )


async def test_a_blocked_address_is_a_refusal(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.fail_next("blocked", endpoint=MAKE_REFUND)
    result = await run(connector_for(fake_myfatoorah), op("refund", payment(invoice), 1_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == "MyFatoorah refused the request (HTTP 403)"
    assert result.raw["status_code"] == 403


@pytest.mark.parametrize("kind", ["timeout", "reset", "500", "malformed"])
@pytest.mark.parametrize(
    ("operation", "state", "endpoint"),
    [
        ("refund", "paid", MAKE_REFUND),
        ("capture", "authorized", UPDATE_PAYMENT_STATUS),
        ("void", "authorized", UPDATE_PAYMENT_STATUS),
    ],
)
async def test_faults_are_unknown_outcomes(
    fake_myfatoorah: FakeMyFatoorah, kind: str, operation: str, state: str, endpoint: str
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state=state)
    fake_myfatoorah.fail_next(kind, endpoint=endpoint)
    result = await run(
        connector_for(fake_myfatoorah, timeout=FAULT_TIMEOUT),
        op(operation, payment(invoice, mode="authorize"), 100_000),
    )
    assert result.outcome == Outcome.UNKNOWN
    assert result.pg_params["result"] == "unknown"
    expected = {"timeout": {"error": "timeout"}, "reset": {"error": "connection_error"}}
    if kind in expected:
        assert result.raw == expected[kind]
    else:
        assert result.raw["status_code"] == (500 if kind == "500" else 200)


@pytest.mark.parametrize("kind", ["timeout", "500", "malformed", "blocked"])
async def test_inquiry_faults_are_unknown(fake_myfatoorah: FakeMyFatoorah, kind: str) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.fail_next(kind)
    result = await inquire_payment(
        connector_for(fake_myfatoorah, timeout=FAULT_TIMEOUT), payment(invoice)
    )
    assert result.outcome == Outcome.UNKNOWN
    fake_myfatoorah.fail_next(kind)
    result = await inquire(
        connector_for(fake_myfatoorah, timeout=FAULT_TIMEOUT), op("refund", payment(invoice), 1_000)
    )
    assert result.outcome == Outcome.UNKNOWN


# -- inquire_operation ----------------------------------------------------------------------------


async def test_a_lost_refund_reply_is_found_again_and_followed(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    request = op("refund", payment(invoice), 12_000)
    fake_myfatoorah.fail_next("timeout", endpoint=MAKE_REFUND, apply=True)

    lost = await run(connector_for(fake_myfatoorah, timeout=FAULT_TIMEOUT), request)
    assert lost.outcome == Outcome.UNKNOWN

    queued = await inquire(connector_for(fake_myfatoorah), request)
    assert queued.outcome == Outcome.PENDING
    assert fake_myfatoorah.requests[-1].json == {"KeyType": "InvoiceId", "Key": invoice}
    fake_myfatoorah.settle_refund(invoice, "Refunded")
    done = await inquire(connector_for(fake_myfatoorah), request)
    assert done.outcome == Outcome.SUCCESS
    assert done.message == "Refunded"
    assert done.pg_params["rrn"] == fake_myfatoorah.refunds(invoice)[0]["RRN"]


async def test_a_canceled_refund_is_failed(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    request = op("refund", payment(invoice), 12_000)
    assert (await run(connector_for(fake_myfatoorah), request)).outcome == Outcome.PENDING
    fake_myfatoorah.settle_refund(invoice, "Canceled")
    result = await inquire(connector_for(fake_myfatoorah), request)
    assert result.outcome == Outcome.FAILED
    assert result.message == "MyFatoorah canceled the refund"


async def test_a_refund_never_made_is_failed(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.add_refund(invoice, "1.000", external_identifier="SOMEONE-ELSE")
    request = op("refund", payment(invoice), 12_000)
    fake_myfatoorah.fail_next("timeout", endpoint=MAKE_REFUND)  # nothing done
    assert (
        await run(connector_for(fake_myfatoorah, timeout=FAULT_TIMEOUT), request)
    ).outcome == Outcome.UNKNOWN
    result = await inquire(connector_for(fake_myfatoorah), request)
    assert result.outcome == Outcome.FAILED
    assert result.message == f"MyFatoorah has no refund with reference {request.reference_number}"


async def test_a_refund_of_another_amount_under_this_reference_is_unknown(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.add_refund(invoice, "2.000", external_identifier="REF-X", status="Refunded")
    result = await inquire(
        connector_for(fake_myfatoorah), op("refund", payment(invoice), 1_000, reference="REF-X")
    )
    assert result.outcome == Outcome.UNKNOWN
    assert "different amount" in result.message


async def test_a_refund_without_our_reference_is_found_by_its_refund_id(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    """When the operation holds MyFatoorah's refund id, that id says which refund it is."""
    invoice = fake_myfatoorah.add_invoice("100.000")
    refund_id = fake_myfatoorah.add_refund(invoice, "3.000", status="Refunded")
    request = op("refund", payment(invoice), 3_000)
    request = dataclasses.replace(request, gateway_refs={"refund_id": str(refund_id)})
    result = await inquire(connector_for(fake_myfatoorah), request)
    assert result.outcome == Outcome.SUCCESS
    assert result.gateway_refs["refund_id"] == str(refund_id)


async def test_a_lost_capture_reply_is_confirmed_by_inquiry(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    request = op("capture", payment(invoice, mode="authorize"), 30_000)
    fake_myfatoorah.fail_next("reset", endpoint=UPDATE_PAYMENT_STATUS, apply=True)
    assert (await run(connector_for(fake_myfatoorah), request)).outcome == Outcome.UNKNOWN

    result = await inquire(connector_for(fake_myfatoorah), request)
    assert fake_myfatoorah.requests[-1].path == GET_PAYMENT_STATUS
    assert_sent(fake_myfatoorah.requests[-1], {"Key": invoice, "KeyType": "InvoiceId"})
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Captured"
    # a capture of another amount (the one capture of this invoice) was not this one
    other = await inquire(
        connector_for(fake_myfatoorah), op("capture", payment(invoice, mode="authorize"), 20_000)
    )
    assert other.outcome == Outcome.FAILED
    # and the void of a captured invoice did not happen
    void = await inquire(
        connector_for(fake_myfatoorah), op("void", payment(invoice, mode="authorize"), 100_000)
    )
    assert void.outcome == Outcome.FAILED
    assert void.message == "Not released: the invoice was captured"


async def test_operations_not_done_are_failed(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    pay = payment(invoice, mode="authorize")
    capture = await inquire(connector_for(fake_myfatoorah), op("capture", pay, 100_000))
    void = await inquire(connector_for(fake_myfatoorah), op("void", pay, 100_000))
    assert (capture.outcome, capture.message) == (
        Outcome.FAILED,
        "Not captured: the authorization is still held at MyFatoorah",
    )
    assert (void.outcome, void.message) == (
        Outcome.FAILED,
        "Not released: the authorization is still held at MyFatoorah",
    )


async def test_a_release_is_confirmed_by_inquiry(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    pay = payment(invoice, mode="authorize")
    await run(connector_for(fake_myfatoorah), op("void", pay, 100_000))
    void = await inquire(connector_for(fake_myfatoorah), op("void", pay, 100_000))
    capture = await inquire(connector_for(fake_myfatoorah), op("capture", pay, 100_000))
    assert void.outcome == Outcome.SUCCESS
    assert capture.outcome == Outcome.FAILED
    assert capture.message == "The authorization was released; nothing was captured"


async def test_an_invoice_status_not_understood_is_pending(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state="authorized")
    fake_myfatoorah.set_invoice_status(invoice, "UnderReview")
    pay = payment(invoice, mode="authorize")
    for operation in ("capture", "void"):
        result = await inquire(connector_for(fake_myfatoorah), op(operation, pay, 100_000))
        assert result.outcome == Outcome.PENDING
    assert (await inquire_payment(connector_for(fake_myfatoorah), pay)).outcome == Outcome.PENDING


# -- inquire_payment ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "mode", "outcome", "message"),
    [
        ("paid", "purchase", Outcome.SUCCESS, "Paid"),
        ("authorized", "authorize", Outcome.SUCCESS, "Authorized"),
        ("authorized", "purchase", Outcome.PENDING, "The payment is only authorized"),
        ("in_progress", "purchase", Outcome.PENDING, "Payment in progress"),
        ("unpaid", "purchase", Outcome.PENDING, "Payment in progress"),
        ("failed", "purchase", Outcome.FAILED, "Declined by the issuer"),
        ("canceled", "purchase", Outcome.FAILED, "The MyFatoorah invoice is canceled"),
    ],
)
async def test_inquire_payment(
    fake_myfatoorah: FakeMyFatoorah, state: str, mode: str, outcome: Outcome, message: str
) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000", state=state)
    pay = payment(invoice, mode=mode)
    result = await inquire_payment(connector_for(fake_myfatoorah), pay)
    assert_sent(fake_myfatoorah.requests[0], {"Key": invoice, "KeyType": "InvoiceId"})
    assert (result.outcome, result.message) == (outcome, message)
    assert result.gateway_refs["invoice_id"] == invoice
    assert result.pg_params["ref"] == pay.reference_number


async def test_inquire_payment_by_payment_id(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    payment_id = fake_myfatoorah.payment_id(invoice)
    result = await inquire_payment(
        connector_for(fake_myfatoorah), payment(None, refs={"payment_id": payment_id})
    )
    assert_sent(fake_myfatoorah.requests[0], {"Key": payment_id, "KeyType": "PaymentId"})
    assert result.outcome == Outcome.SUCCESS
    assert result.gateway_refs == {"invoice_id": invoice, "payment_id": payment_id}


# -- status maps and amounts ----------------------------------------------------------------------


def test_status_maps_cover_the_documented_statuses() -> None:
    lookup = transformers.status_outcome
    assert [
        lookup(transformers.TRANSACTION_STATUS_OUTCOME, s)
        for s in ("InProgress", "Succss", "Failed", "Authorize", "Canceled")
    ] == [Outcome.PENDING, Outcome.SUCCESS, Outcome.FAILED, Outcome.SUCCESS, Outcome.FAILED]
    assert [
        lookup(transformers.INVOICE_STATUS_OUTCOME, s) for s in ("Paid", "Pending", "Canceled")
    ] == [Outcome.SUCCESS, Outcome.PENDING, Outcome.FAILED]
    assert [
        lookup(transformers.REFUND_STATUS_OUTCOME, s)
        for s in ("Refunded", "Pending", "Canceled", "REFUNDED", "CANCELED")
    ] == [Outcome.SUCCESS, Outcome.PENDING, Outcome.FAILED, Outcome.SUCCESS, Outcome.FAILED]
    for table in (
        transformers.TRANSACTION_STATUS_OUTCOME,
        transformers.INVOICE_STATUS_OUTCOME,
        transformers.REFUND_STATUS_OUTCOME,
    ):
        for unknown in ("", None, "Approved", "Settled", "OK", "Succeeded"):
            assert lookup(table, unknown) == Outcome.PENDING


def test_amounts_are_written_exactly_and_never_as_floats() -> None:
    body = {"Amount": transformers.to_amount(105_033, "KWD"), "Key": "1", "Flag": False}
    assert kit.encode_json(body) == b'{"Amount":105.033,"Key":"1","Flag":false}'
    assert kit.encode_json({"Amount": transformers.to_amount(1_000, "SAR")}) == b'{"Amount":10.00}'
    with pytest.raises(TypeError):
        kit.encode_json({"Amount": 1.5})
    assert transformers.to_minor(Decimal("12.345"), "KWD") == 12_345
    assert transformers.to_minor(Decimal("12.3456"), "KWD") is None
    assert kit.decode_json('{"InvoiceValue": 0.1}')["InvoiceValue"] == Decimal("0.1")


async def test_the_fake_enforces_the_protocol(fake_myfatoorah: FakeMyFatoorah) -> None:
    invoice = fake_myfatoorah.add_invoice("100.000")
    auth = {"Authorization": f"Bearer {TEST_API_TOKEN}", "Content-Type": "application/json"}

    async with httpx.AsyncClient(base_url=fake_myfatoorah.url) as http:

        async def post(
            body: str, headers: dict[str, str] | None = None, path: str = MAKE_REFUND
        ) -> httpx.Response:
            return await http.post(
                path, content=body.encode(), headers=auth if headers is None else headers
            )

        too_fine = await post(f'{{"KeyType":"InvoiceId","Key":"{invoice}","Amount":1.0005}}')
        as_text = await post(f'{{"KeyType":"InvoiceId","Key":"{invoice}","Amount":"1.000"}}')
        no_key = await post('{"KeyType":"InvoiceId","Amount":1}')
        bad_type = await post(f'{{"KeyType":"RefundId","Key":"{invoice}","Amount":1}}')
        no_token = await post("{}", {"Content-Type": "application/json"})
        text_body = await post("{}", {**auth, "Content-Type": "text/plain"})
        unknown = await post("{}", path="/v2/MakeRefunds")
        wrong_method = await http.get(MAKE_REFUND, headers=auth)
    for reply in (too_fine, as_text, no_key, bad_type):
        assert reply.status_code == 400
        assert reply.json()["IsSuccess"] is False
        assert reply.json()["ValidationErrors"]
    assert (no_token.status_code, no_token.content) == (401, b"")
    assert text_body.status_code == 415
    assert unknown.status_code == 404
    assert "No HTTP resource was found" in unknown.json()["Message"]
    assert wrong_method.status_code == 405
    assert fake_myfatoorah.refunds(invoice) == []


# -- webhooks -------------------------------------------------------------------------------------

SECRET = "whsec-myfatoorah-test-secret"


def sign(canonical: str, secret: str = SECRET) -> str:
    return base64.b64encode(
        hmac.new(secret.encode(), canonical.encode(), hashlib.sha256).digest()
    ).decode()


V2_PAYMENT = (
    '{"Event":{"Code":1,"Name":"PAYMENT_STATUS_CHANGED","CountryIsoCode":"KWT",'
    '"CreationDate":"2025-01-26T12:07:15.7066667Z","Reference":"WH-001"},'
    '"Data":{"Invoice":{"Id":"6409988","Status":"PAID","Reference":"2025000019",'
    '"ExternalIdentifier":"asdqwd-f13sdf-fasjkz","UserDefinedField":null},'
    '"Transaction":{"Id":"53059","Status":"SUCCESS","PaymentMethod":"KNET",'
    '"PaymentId":"07076409988323998875"},'
    '"Amount":{"BaseCurrency":"KWD","ValueInBaseCurrency":10.500}}}'
)
V2_PAYMENT_CANONICAL = (
    "Invoice.Id=6409988,Invoice.Status=PAID,Transaction.Status=SUCCESS,"
    "Transaction.PaymentId=07076409988323998875,"
    "Invoice.ExternalIdentifier=asdqwd-f13sdf-fasjkz"
)
V2_REFUND = (
    '{"Event":{"Code":2,"Name":"REFUND_STATUS_CHANGED","CountryIsoCode":"KWT",'
    '"CreationDate":"2025-01-26T12:07:15Z","Reference":"WH-002"},'
    '"Data":{"Refund":{"Id":28401,"Reference":"2025028401","Status":"REFUNDED",'
    '"InvoiceId":6424077,"RRN":"000000028401"},'
    '"Amount":{"BaseCurrency":"KWD","ValueInBaseCurrency":40.500},'
    '"ReferencedInvoice":{"Id":"6424001","Reference":"2025006424"}}}'
)
V2_REFUND_CANONICAL = (
    "Refund.Id=28401,Refund.Status=REFUNDED,"
    "Amount.ValueInBaseCurrency=40.500,ReferencedInvoice.Id=6424001"
)
V1_REFUND = (
    '{"EventType":2,"Event":"RefundStatusChanged","DateTime":"04032021211057",'
    '"CountryIsoCode":"KWT","Data":{"RefundId":2840,"RefundReference":"2021000019",'
    '"CreatedDate":"04032021210447","RefundStatus":"REFUNDED","Amount":"40","Comments":null,'
    '"InvoiceId":"585757","InvoiceRefernce":"2021000184",'
    '"GatewayReference":{"PaymentId":"100202109798688317","RefundAmount":"40"}}}'
)
V1_REFUND_CANONICAL = (
    "Amount=40,Comments=,CreatedDate=04032021210447,InvoiceId=585757,"
    "InvoiceRefernce=2021000184,RefundId=2840,RefundReference=2021000019,"
    "RefundStatus=REFUNDED"
)


@pytest.mark.parametrize(
    ("body", "canonical", "version"),
    [
        (V2_PAYMENT, V2_PAYMENT_CANONICAL, "v2"),
        (V2_REFUND, V2_REFUND_CANONICAL, "v2"),
        (V1_REFUND, V1_REFUND_CANONICAL, "V1"),
    ],
)
def test_webhook_signature_follows_the_documented_field_order(
    body: str, canonical: str, version: str
) -> None:
    headers = {"MyFatoorah-Signature": sign(canonical), "myfatoorah-webhook-version": version}
    assert verify_signature(body.encode(), headers, SECRET)
    assert verify_signature(body, [(k.lower(), v) for k, v in headers.items()], SECRET)
    # without the version header the body's shape decides
    assert verify_signature(body, {"MyFatoorah-Signature": sign(canonical)}, SECRET)


@pytest.mark.parametrize(
    ("body", "canonical"),
    [
        (V2_PAYMENT, V2_PAYMENT_CANONICAL),
        (V2_REFUND, V2_REFUND_CANONICAL),
        (V1_REFUND, V1_REFUND_CANONICAL),
    ],
)
def test_webhook_tampered_or_wrongly_signed_is_refused(body: str, canonical: str) -> None:
    good = {"MyFatoorah-Signature": sign(canonical)}
    tampered = body.replace("REFUNDED", "CANCELED").replace('"PAID"', '"PENDING"')
    assert tampered != body
    assert not verify_signature(tampered, good, SECRET)
    assert not verify_signature(body, {"MyFatoorah-Signature": sign(canonical, "other")}, SECRET)
    assert not verify_signature(body, good, "other-secret")
    assert not verify_signature(body, good, "")  # no secret configured: fail closed
    assert not verify_signature(body, {}, SECRET)
    assert not verify_signature(body, {**good, "myfatoorah-webhook-version": "v3"}, SECRET)
    assert not verify_signature(b"not json", good, SECRET)
    # the signature covers the values as written: 40.500 is not 40.5
    if "40.500" in body:
        assert not verify_signature(body.replace("40.500", "40.5"), good, SECRET)


def test_webhook_alphabetical_order_is_not_v2_order() -> None:
    alphabetical = ",".join(sorted(V2_PAYMENT_CANONICAL.split(",")))
    assert not verify_signature(V2_PAYMENT, {"MyFatoorah-Signature": sign(alphabetical)}, SECRET)


def test_webhook_parsing_gives_reference_and_status() -> None:
    refund = parse_notification(V2_REFUND)
    # A V2 refund event has no refund ExternalIdentifier: it is matched by Refund.Id.
    assert (refund.reference, refund.status, refund.outcome) == (None, "REFUNDED", Outcome.SUCCESS)
    assert (refund.event, refund.invoice_id, refund.refund_id, refund.amount) == (
        "refund",
        "6424001",
        "28401",
        Decimal("40.500"),
    )
    paid = verify_and_parse(
        V2_PAYMENT, {"MyFatoorah-Signature": sign(V2_PAYMENT_CANONICAL)}, SECRET
    )
    assert (paid.event, paid.reference, paid.status, paid.outcome, paid.payment_id) == (
        "payment",
        "asdqwd-f13sdf-fasjkz",
        "SUCCESS",
        Outcome.SUCCESS,
        "07076409988323998875",
    )
    v1 = parse_notification(V1_REFUND)
    assert (v1.version, v1.status, v1.refund_id, v1.refund_reference, v1.amount) == (
        "v1",
        "REFUNDED",
        "2840",
        "2021000019",
        Decimal("40"),
    )
    canceled = parse_notification(V2_REFUND.replace("REFUNDED", "CANCELED"))
    assert canceled.outcome == Outcome.FAILED
    odd = parse_notification(V2_REFUND.replace("REFUNDED", "ON_HOLD"))
    assert odd.outcome == Outcome.PENDING
    with pytest.raises(MyFatoorahWebhookError):
        verify_and_parse(V2_REFUND, {"MyFatoorah-Signature": sign("x")}, SECRET)
    with pytest.raises(MyFatoorahWebhookError):
        parse_notification(V2_REFUND.replace('"Code":2', '"Code":3'))
    # Refund.InvoiceId is the refund's own invoice: never taken for the payment's
    orphan = parse_notification(
        V2_REFUND.replace('"ReferencedInvoice":{"Id":"6424001",', '"Other":{')
    )
    assert orphan.invoice_id is None and orphan.refund_id == "28401"


def test_the_connector_turns_a_signed_notification_into_a_hint() -> None:
    config = ConnectorConfig("mf", True, {"api_token": "t"}, webhook_secret=SECRET)
    connector = MyFatoorahConnector(config)
    headers = {
        "myfatoorah-signature": sign(V2_REFUND_CANONICAL),
        "myfatoorah-webhook-version": "v2",
    }
    assert connector.parse_notification(headers, V2_REFUND.encode()) == Notification(
        reference=None, gateway_refs={"invoice_id": "6424001", "refund_id": "28401"}
    )
    v1 = connector.parse_notification(
        {"MyFatoorah-Signature": sign(V1_REFUND_CANONICAL)}, V1_REFUND.encode()
    )
    assert v1 == Notification(
        reference=None, gateway_refs={"invoice_id": "585757", "refund_id": "2840"}
    )
    with pytest.raises(NotificationRejected):
        connector.parse_notification({"myfatoorah-signature": sign("forged")}, V2_REFUND.encode())
    unsigned = MyFatoorahConnector(ConnectorConfig("mf", True, {"api_token": "t"}))
    with pytest.raises(NotificationRejected):
        unsigned.parse_notification(headers, V2_REFUND.encode())  # no secret: fail closed


# -- secrets --------------------------------------------------------------------------------------


async def test_credentials_and_card_data_never_reach_logs_or_results(
    fake_myfatoorah: FakeMyFatoorah, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "httpx", "httpcore", "payops"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    full_pan = "4508750015741019"
    fake_myfatoorah.hang_seconds = 1.0
    paid = fake_myfatoorah.add_invoice("100.000")
    fake_myfatoorah.set_transaction(paid, CardNumber=full_pan)  # a gateway that forgot to mask
    authorized = fake_myfatoorah.add_invoice("100.000", state="authorized")
    fake_myfatoorah.set_transaction(authorized, CardNumber=full_pan)
    voidable = fake_myfatoorah.add_invoice("100.000", state="authorized")
    results = [
        await run(connector_for(fake_myfatoorah), op("refund", payment(paid), 1_000)),
        await run(
            connector_for(fake_myfatoorah),
            op("capture", payment(authorized, mode="authorize"), 1_000),
        ),
        await run(
            connector_for(fake_myfatoorah), op("void", payment(voidable, mode="authorize"), 100_000)
        ),
        await inquire_payment(connector_for(fake_myfatoorah), payment(paid)),
        await inquire(connector_for(fake_myfatoorah), op("refund", payment(paid), 1_000)),
        await run(
            connector_for(fake_myfatoorah, token=WRONG_API_TOKEN),
            op("refund", payment(paid), 1_000),
        ),
    ]
    fake_myfatoorah.fail_next("timeout", endpoint=MAKE_REFUND)
    results.append(
        await run(
            connector_for(fake_myfatoorah, timeout=FAULT_TIMEOUT),
            op("refund", payment(paid), 1_000),
        )
    )
    fake_myfatoorah.fail_next("500")
    results.append(await inquire_payment(connector_for(fake_myfatoorah), payment(paid)))

    assert any(record.name.startswith("httpx") for record in caplog.records)
    assert any(record.name.startswith("httpcore") for record in caplog.records)
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    dumped = json.dumps([[r.raw, r.pg_params, r.message, r.gateway_refs] for r in results])
    for secret in (TEST_API_TOKEN, WRONG_API_TOKEN, "Bearer "):
        assert secret not in logged
        assert secret not in dumped
    assert full_pan not in logged
    assert full_pan not in dumped
    assert results[3].pg_params["card_number"] == "450875xxxxxx1019"
    assert results[3].raw["Data"]["InvoiceTransactions"][0]["CardNumber"] == "450875xxxxxx1019"


# -- protocol check fixes (gateway-protocol-check.md §4, §9) --------------------------------------


async def test_a_duplicate_payment_invoice_is_paid(fake_myfatoorah: FakeMyFatoorah) -> None:
    # Before: "DuplicatePayment" was not understood and the payment stayed pending forever.
    invoice = fake_myfatoorah.add_invoice("12.000", "KWD")
    fake_myfatoorah.set_invoice_status(invoice, "DuplicatePayment")
    conn = connector_for(fake_myfatoorah)
    try:
        found = await conn.inquire_payment(payment(invoice, amount=12_000))
    finally:
        await conn.aclose()
    assert found.outcome == Outcome.SUCCESS
    refund = await run(
        connector_for(fake_myfatoorah), op("refund", payment(invoice, amount=12_000), 2_000)
    )
    assert refund.outcome == Outcome.PENDING


async def test_make_refund_sends_an_idempotency_key_that_myfatoorah_honours(
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = fake_myfatoorah.add_invoice("50.000", "KWD")
    # Keyed by the payment id only and the invoice lookup fails: MakeRefund goes by PaymentId,
    # and its refund's own invoice must not be taken for the payment's.
    payment_id = fake_myfatoorah.payment_id(invoice)
    pay = payment(None, amount=50_000, refs={"payment_id": payment_id})
    request = op("refund", pay, 5_000)
    fake_myfatoorah.fail_next("500", endpoint=GET_PAYMENT_STATUS)
    first = await run(connector_for(fake_myfatoorah), request)
    fake_myfatoorah.fail_next("500", endpoint=GET_PAYMENT_STATUS)
    again = await run(connector_for(fake_myfatoorah), request)
    sent = fake_myfatoorah.requests_to(MAKE_REFUND)
    assert [r.header("Idempotency-Key") for r in sent] == [request.reference_number] * 2
    assert len(fake_myfatoorah.refunds(invoice)) == 1  # the key kept the resend from refunding
    refund_invoice = fake_myfatoorah.invoices[int(invoice)].refunds[0].refund_invoice_id
    for result in (first, again):
        assert result.outcome == Outcome.PENDING
        assert result.gateway_refs.get("invoice_id") is None  # before: the RefundInvoiceId
        assert result.gateway_refs["refund_invoice_id"] == str(refund_invoice)
