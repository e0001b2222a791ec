"""The MPGS connector against the local fake gateway, over real loopback HTTP.

Each test asserts the exact request the connector sent (recorded by the fake) and the parsed
GatewayResult. The fake is written from the protocol notes, not from the connector.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from payops.connectors.base import (
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.kit import Reply
from payops.connectors.mpgs import transformers as t
from payops.connectors.mpgs.connector import MpgsConnector
from payops.connectors.mpgs.decisions import transaction_result
from payops.connectors.mpgs.notifications import (
    InvalidNotification,
    Notification,
    notification_key,
    parse_notification,
    verify_and_parse,
    verify_notification,
)
from payops.connectors.registry import build_connector, connector_class
from payops.ids import new_reference_number
from tests.connectors.mpgs.fake_server import (
    API_PASSWORD,
    FULL_CARD,
    MASKED_CARD,
    MERCHANT_ID,
    FakeMpgs,
    mpgs_fake,  # noqa: F401 - the fixture
    render,
    successful_capture_response,
)
from tests.helpers import operation_request

ORDER = "MPGS-ORD-1"
AUTH = "AUTH-1"
SHORT_TIMEOUT = 0.5
BASE = f"/api/rest/version/100/merchant/{MERCHANT_ID}"


# -- helpers ------------------------------------------------------------------------------------


def make_connector(
    fake: FakeMpgs,
    *,
    timeout: float = 3.0,
    password: str = API_PASSWORD,
    merchant_id: str = MERCHANT_ID,
    **options: Any,
) -> MpgsConnector:
    return MpgsConnector(
        ConnectorConfig(
            pg_code="mpgs-kwd",
            is_sandbox=True,
            credentials={"merchant_id": merchant_id, "api_password": password},
            timeout_seconds=timeout,
            options={"base_url": fake.url, **options},
        )
    )


@pytest.fixture
async def mpgs(mpgs_fake: FakeMpgs) -> AsyncIterator[MpgsConnector]:  # noqa: F811
    connector = make_connector(mpgs_fake)
    yield connector
    await connector.aclose()


@pytest.fixture
async def impatient(mpgs_fake: FakeMpgs) -> AsyncIterator[MpgsConnector]:  # noqa: F811
    connector = make_connector(mpgs_fake, timeout=SHORT_TIMEOUT)
    yield connector
    await connector.aclose()


def payment(
    amount: int = 100_000,
    currency: str = "KWD",
    mode: str = "authorize",
    refs: dict[str, Any] | None = None,
) -> PaymentRef:
    return PaymentRef(
        reference_number=new_reference_number(),
        amount=amount,
        currency_code=currency,
        operation_mode=mode,
        gateway_refs={"order_id": ORDER, "transaction_id": AUTH} if refs is None else refs,
    )


def op(
    operation: str,
    amount: int,
    pay: PaymentRef | None = None,
    *,
    ref: str | None = None,
    currency: str | None = None,
) -> OperationRequest:
    return operation_request(
        operation,
        amount,
        pay or payment(),
        reference=ref or new_reference_number(),
        currency=currency,
    )


def authorized(fake: FakeMpgs, amount: str = "100.000", currency: str = "KWD") -> None:
    fake.add_order(ORDER, amount, currency, mode="authorize", transaction_id=AUTH)


def paid(fake: FakeMpgs, amount: str = "100.000", currency: str = "KWD") -> None:
    fake.add_order(ORDER, amount, currency, mode="purchase", transaction_id=AUTH)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_put(fake: FakeMpgs, ref: str, body: dict[str, Any], *, index: int = -1) -> None:
    sent = fake.puts()[index]
    assert sent.method == "PUT"
    assert sent.path == f"{BASE}/order/{ORDER}/transaction/{ref}"
    assert sent.headers["authorization"] == basic(f"merchant.{MERCHANT_ID}", API_PASSWORD)
    assert sent.headers["content-type"] == "application/json;charset=UTF-8"
    assert sent.json == body  # exactly these fields, amounts as decimal strings


def decimal_of(raw_amount: Any) -> Decimal:
    assert isinstance(raw_amount, str)  # exact text of the JSON number, never a float
    return Decimal(raw_amount)


# -- identity and configuration -----------------------------------------------------------------


def test_registered_with_its_capabilities_and_credentials() -> None:
    assert connector_class("mpgs") is MpgsConnector
    assert MpgsConnector.name == "mpgs"
    assert MpgsConnector.capabilities == {"capture", "refund", "void", "inquiry"}
    assert MpgsConnector.required_credentials == ("merchant_id", "api_password")


@pytest.mark.parametrize(
    ("sandbox", "options", "url"),
    [
        (True, {}, "https://mtf.gateway.mastercard.com"),
        (False, {}, "https://ap-gateway.mastercard.com"),
        (False, {"host": "eu-gateway.mastercard.com"}, "https://eu-gateway.mastercard.com"),
        (
            True,
            {"host": "test-nbkpayment.mtf.gateway.mastercard.com"},
            "https://test-nbkpayment.mtf.gateway.mastercard.com",
        ),
        (
            False,
            {"host": "https://na-gateway.mastercard.com/"},
            "https://na-gateway.mastercard.com",
        ),
        (
            False,
            {"host": "eu-gateway.mastercard.com", "base_url": "http://127.0.0.1:9/"},
            "http://127.0.0.1:9",
        ),
    ],
)
def test_host_follows_is_sandbox_unless_overridden(
    sandbox: bool, options: dict[str, Any], url: str
) -> None:
    connector = build_connector(
        "mpgs",
        ConnectorConfig(
            "mpgs-x", sandbox, {"merchant_id": "M", "api_password": "p"}, options=options
        ),
    )
    assert connector.base_url == url  # type: ignore[attr-defined]


async def test_api_version_is_configurable(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    authorized(mpgs_fake)
    connector = make_connector(mpgs_fake, api_version=63)
    try:
        request = op("capture", 1_000)
        result = await connector.capture(request)
    finally:
        await connector.aclose()
    assert result.outcome == Outcome.SUCCESS
    assert mpgs_fake.puts()[-1].path == (
        f"/api/rest/version/63/merchant/{MERCHANT_ID}/order/{ORDER}/transaction/"
        f"{request.reference_number}"
    )
    assert result.raw["version"] == "63"


# -- capture ------------------------------------------------------------------------------------


async def test_capture_success(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    request = op("capture", 60_000)
    ref = request.reference_number

    result = await mpgs.capture(request)

    assert_put(
        mpgs_fake,
        ref,
        {
            "apiOperation": "CAPTURE",
            "transaction": {"amount": "60.000", "currency": "KWD", "reference": ref},
        },
    )
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Approved (APPROVED)"
    assert result.raw["result"] == "SUCCESS"
    assert result.raw["transaction"]["id"] == ref
    assert result.raw["transaction"]["type"] == "CAPTURE"
    assert result.raw["transaction"]["amount"] == "60.000"
    assert result.raw["transaction"]["receipt"] == "412345678900"  # an RRN is not a card number
    assert result.raw["order"]["status"] == "PARTIALLY_CAPTURED"
    assert decimal_of(result.raw["order"]["totalCapturedAmount"]) == Decimal("60")
    assert result.pg_params == {
        "ref": ORDER,
        "transaction_id": ref,
        "result": "APPROVED",
        "decision": "SUCCESS",
        "pg_message": "Approved (APPROVED)",
        "auth_code": "A1B2C3",
        "receipt_no": "412345678900",
        "rrn": "412345678900",
        "card_number": MASKED_CARD,
        "card_type": "MASTERCARD",
        "card_expiry_month": "5",
        "card_expiry_year": "39",
    }
    assert result.gateway_refs == {"order_id": ORDER, "operation_transaction_id": ref}
    assert mpgs_fake.orders[ORDER].captured == Decimal("60")


@pytest.mark.parametrize(
    ("currency", "order_amount", "minor", "wire"),
    [
        ("KWD", "10.000", 1, "0.001"),
        ("KWD", "10.000", 5_250, "5.250"),
        ("USD", "100.00", 1_050, "10.50"),
        ("SAR", "100.00", 10_000, "100.00"),
        ("JPY", "1000", 500, "500"),
    ],
)
async def test_capture_amount_has_the_currency_decimals(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,
    currency: str,
    order_amount: str,  # noqa: F811
    minor: int,
    wire: str,
) -> None:
    authorized(mpgs_fake, order_amount, currency)
    request = op("capture", minor, payment(currency=currency))
    result = await mpgs.capture(request)
    assert mpgs_fake.puts()[-1].json["transaction"]["amount"] == wire
    assert mpgs_fake.puts()[-1].json["transaction"]["currency"] == currency
    assert result.outcome == Outcome.SUCCESS
    assert str(result.raw["transaction"]["amount"]) == wire  # JSON 500 stays an int


async def test_partial_captures_accumulate(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    first = await mpgs.capture(op("capture", 40_000))
    second = await mpgs.capture(op("capture", 60_000))
    assert (first.outcome, second.outcome) == (Outcome.SUCCESS, Outcome.SUCCESS)
    assert second.raw["order"]["status"] == "CAPTURED"
    beyond = await mpgs.capture(op("capture", 1))
    assert beyond.outcome == Outcome.FAILED


async def test_capture_beyond_the_authorization_is_refused(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    result = await mpgs.capture(op("capture", 100_001))
    assert result.outcome == Outcome.FAILED
    assert result.raw["result"] == "ERROR"
    assert result.raw["http_status"] == 400
    assert result.raw["error"]["cause"] == "INVALID_REQUEST"
    assert result.raw["error"]["field"] == "transaction.amount"
    assert result.message.startswith("INVALID_REQUEST: Value '100.001' is invalid.")
    assert mpgs_fake.orders[ORDER].captured == 0


async def test_capture_in_another_currency_is_refused(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    result = await mpgs.capture(op("capture", 1_000, currency="USD"))
    assert result.outcome == Outcome.FAILED
    assert result.raw["error"]["field"] == "transaction.currency"


async def test_capture_on_an_unknown_order_is_refused(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    result = await mpgs.capture(op("capture", 1_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw["error"]["cause"] == "INVALID_REQUEST"


async def test_declined_capture(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    mpgs_fake.fail_next("decline")
    request = op("capture", 10_000)
    result = await mpgs.capture(request)
    assert result.outcome == Outcome.FAILED
    assert result.message == "Do not honour (DECLINED)"
    assert result.raw["result"] == "FAILURE"
    assert result.raw["response"] == {
        "gatewayCode": "DECLINED",
        "acquirerCode": "05",
        "acquirerMessage": "Do not honour",
    }
    assert result.pg_params["result"] == "DECLINED"
    stored = mpgs_fake.transaction(ORDER, request.reference_number)
    assert stored is not None and stored.result == "FAILURE"
    assert mpgs_fake.orders[ORDER].captured == 0


async def test_wrong_credentials(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    authorized(mpgs_fake)
    connector = make_connector(mpgs_fake, password="not-the-password")
    try:
        result = await connector.capture(op("capture", 1_000))
    finally:
        await connector.aclose()
    assert mpgs_fake.puts()[-1].headers["authorization"] == basic(
        f"merchant.{MERCHANT_ID}", "not-the-password"
    )
    assert result.outcome == Outcome.FAILED
    assert result.raw == {
        "error": {"cause": "REQUEST_REJECTED", "explanation": "Invalid credentials."},
        "result": "ERROR",
        "http_status": 401,
    }
    assert result.message == "REQUEST_REJECTED: Invalid credentials."
    assert mpgs_fake.orders[ORDER].captured == 0


async def test_credentials_of_another_merchant(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    authorized(mpgs_fake)
    connector = make_connector(mpgs_fake, merchant_id="TESTOTHER")
    try:
        result = await connector.capture(op("capture", 1_000))
    finally:
        await connector.aclose()
    assert result.outcome == Outcome.FAILED
    assert result.raw["http_status"] == 401


# -- refund -------------------------------------------------------------------------------------


async def test_refund_success_and_limit(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    paid(mpgs_fake)
    pay = payment(mode="purchase")
    request = op("refund", 25_500, pay)
    ref = request.reference_number

    result = await mpgs.refund(request)

    assert_put(
        mpgs_fake,
        ref,
        {
            "apiOperation": "REFUND",
            "transaction": {"amount": "25.500", "currency": "KWD", "reference": ref},
        },
    )
    assert "sourceOfFunds" not in mpgs_fake.puts()[-1].json
    assert result.outcome == Outcome.SUCCESS
    assert result.raw["transaction"]["type"] == "REFUND"
    assert result.raw["order"]["status"] == "PARTIALLY_REFUNDED"
    assert result.raw["order"]["totalRefundedAmount"] == "25.500"
    assert result.pg_params["transaction_id"] == ref

    rest = await mpgs.refund(op("refund", 74_500, pay))
    assert rest.outcome == Outcome.SUCCESS
    assert rest.raw["order"]["status"] == "REFUNDED"

    beyond = await mpgs.refund(op("refund", 1, pay))
    assert beyond.outcome == Outcome.FAILED
    assert beyond.raw["error"]["field"] == "transaction.amount"
    assert "exceeds the captured amount" in beyond.message
    assert mpgs_fake.orders[ORDER].refunded == Decimal("100")


async def test_refund_before_any_capture_is_refused(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    result = await mpgs.refund(op("refund", 1_000))
    assert result.outcome == Outcome.FAILED
    assert result.message.startswith("INVALID_REQUEST: Refund not possible")


async def test_refund_after_partial_capture_is_limited_to_the_capture(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    assert (await mpgs.capture(op("capture", 30_000))).outcome == Outcome.SUCCESS
    assert (await mpgs.refund(op("refund", 30_001))).outcome == Outcome.FAILED
    assert (await mpgs.refund(op("refund", 30_000))).outcome == Outcome.SUCCESS


async def test_pending_refund_then_inquiry(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    paid(mpgs_fake)
    mpgs_fake.fail_next("queue")
    request = op("refund", 5_000, payment(mode="purchase"))
    result = await mpgs.refund(request)
    assert result.outcome == Outcome.PENDING
    assert result.raw["result"] == "PENDING"
    assert result.raw["response"]["gatewayCode"] == "SUBMITTED"

    still = await mpgs.inquire_operation(request)
    assert still.outcome == Outcome.PENDING
    assert mpgs_fake.requests[-1].method == "GET"
    assert (
        mpgs_fake.requests[-1].path
        == f"{BASE}/order/{ORDER}/transaction/{request.reference_number}"
    )

    mpgs_fake.settle_pending(ORDER, request.reference_number, approve=True)
    done = await mpgs.inquire_operation(request)
    assert done.outcome == Outcome.SUCCESS
    assert done.raw["result"] == "SUCCESS"


async def test_pending_refund_rejected_later(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    paid(mpgs_fake)
    mpgs_fake.fail_next("queue")
    request = op("refund", 5_000, payment(mode="purchase"))
    assert (await mpgs.refund(request)).outcome == Outcome.PENDING
    mpgs_fake.settle_pending(ORDER, request.reference_number, approve=False)
    assert (await mpgs.inquire_operation(request)).outcome == Outcome.FAILED


# -- void ---------------------------------------------------------------------------------------


async def test_void_success(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    request = op("void", 100_000)
    ref = request.reference_number

    result = await mpgs.void(request)

    assert_put(
        mpgs_fake,
        ref,
        {"apiOperation": "VOID", "transaction": {"targetTransactionId": AUTH, "reference": ref}},
    )
    assert result.outcome == Outcome.SUCCESS
    assert result.raw["transaction"]["type"] == "VOID_AUTHORIZATION"
    assert result.raw["transaction"]["targetTransactionId"] == AUTH
    assert result.raw["order"]["status"] == "CANCELLED"
    assert mpgs_fake.orders[ORDER].voided_auth


async def test_void_finds_the_authorization_when_not_given(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    mpgs_fake.add_order(ORDER, "100.000", "KWD", mode="authorize", transaction_id="auth-77")
    request = op("void", 100_000, payment(refs={"order_id": ORDER}))
    result = await mpgs.void(request)
    assert [r.method for r in mpgs_fake.requests] == ["GET", "PUT"]
    assert mpgs_fake.requests[0].path == f"{BASE}/order/{ORDER}"
    assert mpgs_fake.puts()[-1].json["transaction"]["targetTransactionId"] == "auth-77"
    assert result.outcome == Outcome.SUCCESS


async def test_void_without_any_authorization_sends_nothing(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    paid(mpgs_fake)  # a PAYMENT, no AUTHORIZATION to reverse
    result = await mpgs.void(op("void", 100_000, payment(refs={"order_id": ORDER})))
    assert result.outcome == Outcome.FAILED
    assert mpgs_fake.puts() == []
    assert "No approved authorization" in result.message


async def test_void_after_capture_is_refused(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    assert (await mpgs.capture(op("capture", 10_000))).outcome == Outcome.SUCCESS
    result = await mpgs.void(op("void", 100_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw["error"]["cause"] == "INVALID_REQUEST"
    assert not mpgs_fake.orders[ORDER].voided_auth


async def test_void_after_settlement_is_refused(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    mpgs_fake.orders[ORDER].settled = True
    result = await mpgs.void(op("void", 100_000))
    assert result.outcome == Outcome.FAILED
    assert "settled" in result.message


async def test_second_void_is_refused(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    assert (await mpgs.void(op("void", 100_000))).outcome == Outcome.SUCCESS
    assert (await mpgs.void(op("void", 100_000))).outcome == Outcome.FAILED


# -- idempotency: the transaction id is PayOps's reference number --------------------------------


async def test_identical_resend_is_not_processed_twice(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    request = op("capture", 60_000)
    first = await mpgs.capture(request)
    again = await mpgs.capture(request)
    assert (first.outcome, again.outcome) == (Outcome.SUCCESS, Outcome.SUCCESS)
    assert len(mpgs_fake.puts()) == 2
    assert mpgs_fake.puts()[0].path == mpgs_fake.puts()[1].path
    assert mpgs_fake.orders[ORDER].captured == Decimal("60")
    assert again.raw == first.raw


async def test_same_id_with_another_body_is_refused(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    ref = new_reference_number()
    assert (await mpgs.capture(op("capture", 60_000, ref=ref))).outcome == Outcome.SUCCESS
    other = await mpgs.capture(op("capture", 10_000, ref=ref))
    assert other.outcome == Outcome.FAILED
    assert other.raw["error"]["field"] == "transactionId"
    assert mpgs_fake.orders[ORDER].captured == Decimal("60")


# -- faults: the outcome is unknown, never an exception -----------------------------------------


@pytest.mark.parametrize("perform", [False, True])
@pytest.mark.parametrize("kind", ["timeout", "reset", "500", "server_busy", "malformed"])
async def test_faults_are_unknown(
    mpgs_fake: FakeMpgs,
    impatient: MpgsConnector,
    kind: str,  # noqa: F811
    perform: bool,
) -> None:
    authorized(mpgs_fake)
    mpgs_fake.fail_next(kind, apply=perform)
    request = op("capture", 10_000)
    result = await impatient.capture(request)
    assert result.outcome == Outcome.UNKNOWN
    assert isinstance(result, GatewayResult)
    done = mpgs_fake.transaction(ORDER, request.reference_number) is not None
    assert done is perform


async def test_fault_replies_are_kept(mpgs_fake: FakeMpgs, impatient: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    mpgs_fake.fail_next("500")
    result = await impatient.capture(op("capture", 10_000))
    assert result.raw == {
        "error": {
            "cause": "SERVER_FAILED",
            "explanation": "An internal error occurred; retry later.",
        },
        "result": "ERROR",
        "http_status": 500,
    }
    mpgs_fake.fail_next("malformed")
    result = await impatient.capture(op("capture", 10_000))
    assert result.raw == {"http_status": 201, "error": "unparsable reply"}
    mpgs_fake.fail_next("timeout")
    result = await impatient.capture(op("capture", 10_000))
    assert result.raw == {"error": "timeout"}  # the kit's one fault vocabulary


async def test_gateway_that_cannot_tell_is_unknown(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    mpgs_fake.fail_next("result_unknown")
    result = await mpgs.capture(op("capture", 10_000))
    assert result.outcome == Outcome.UNKNOWN
    assert result.raw["result"] == "UNKNOWN"


async def test_unreachable_gateway_is_unknown() -> None:
    connector = MpgsConnector(
        ConnectorConfig(
            "mpgs-x",
            True,
            {"merchant_id": MERCHANT_ID, "api_password": API_PASSWORD},
            timeout_seconds=SHORT_TIMEOUT,
            options={"base_url": "http://127.0.0.1:9"},
        )
    )
    try:
        for call in (
            connector.capture(op("capture", 1)),
            connector.refund(op("refund", 1)),
            connector.void(op("void", 1)),
            connector.inquire_operation(op("capture", 1)),
            connector.inquire_payment(payment()),
        ):
            assert (await call).outcome == Outcome.UNKNOWN
    finally:
        await connector.aclose()


# -- inquire_operation: done / not done / pending ----------------------------------------------


@pytest.mark.parametrize("kind", ["timeout", "reset", "500", "malformed"])
async def test_inquiry_finds_an_operation_whose_reply_was_lost(
    mpgs_fake: FakeMpgs,
    impatient: MpgsConnector,
    kind: str,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    mpgs_fake.fail_next(kind, apply=True)
    request = op("capture", 25_000)
    assert (await impatient.capture(request)).outcome == Outcome.UNKNOWN

    result = await impatient.inquire_operation(request)

    assert result.outcome == Outcome.SUCCESS
    sent = mpgs_fake.requests[-1]
    assert (sent.method, sent.path) == (
        "GET",
        f"{BASE}/order/{ORDER}/transaction/{request.reference_number}",
    )
    assert sent.headers["authorization"] == basic(f"merchant.{MERCHANT_ID}", API_PASSWORD)
    assert sent.body == b""
    assert result.raw["transaction"]["id"] == request.reference_number
    assert result.raw["transaction"]["amount"] == "25.000"
    assert result.pg_params["transaction_id"] == request.reference_number


@pytest.mark.parametrize("operation", ["capture", "refund", "void"])
async def test_inquiry_of_an_operation_never_performed(
    mpgs_fake: FakeMpgs,
    impatient: MpgsConnector,
    operation: str,  # noqa: F811
) -> None:
    if operation == "refund":
        paid(mpgs_fake)
    else:
        authorized(mpgs_fake)
    mpgs_fake.fail_next("timeout", apply=False)
    request = op(operation, 25_000)
    assert (await impatient.run(request)).outcome == Outcome.UNKNOWN

    result = await impatient.inquire_operation(request)

    assert result.outcome == Outcome.FAILED
    gets = [r.path for r in mpgs_fake.requests if r.method == "GET"]
    assert gets[-2:] == [
        f"{BASE}/order/{ORDER}/transaction/{request.reference_number}",
        f"{BASE}/order/{ORDER}",
    ]
    assert result.message == f"MPGS has no transaction {request.reference_number} on order {ORDER}"
    assert result.raw["transactions"] == [AUTH]


async def test_inquiry_of_a_declined_operation(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    mpgs_fake.fail_next("decline")
    request = op("capture", 1_000)
    await mpgs.capture(request)
    result = await mpgs.inquire_operation(request)
    assert result.outcome == Outcome.FAILED
    assert result.raw["result"] == "FAILURE"


async def test_inquiry_of_a_void(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    request = op("void", 100_000)
    await mpgs.void(request)
    result = await mpgs.inquire_operation(request)
    assert result.outcome == Outcome.SUCCESS
    assert result.raw["transaction"]["type"] == "VOID_AUTHORIZATION"


@pytest.mark.parametrize("kind", ["timeout", "reset", "500", "server_busy", "malformed"])
async def test_inquiry_that_gets_no_answer_is_unknown(
    mpgs_fake: FakeMpgs,
    impatient: MpgsConnector,
    kind: str,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    request = op("capture", 1_000)
    await impatient.capture(request)
    mpgs_fake.fail_next(kind, method="GET")
    assert (await impatient.inquire_operation(request)).outcome == Outcome.UNKNOWN


async def test_inquiry_that_cannot_confirm_absence_is_unknown(
    mpgs_fake: FakeMpgs,
    impatient: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    request = op("capture", 1_000)  # never sent: Retrieve Transaction says "not found"
    # ... and the Retrieve Order that would confirm it fails: the outcome stays open.
    mpgs_fake.fail_next("server_busy", method="GET", suffix=f"/order/{ORDER}")
    result = await impatient.inquire_operation(request)
    assert result.outcome == Outcome.UNKNOWN


async def test_inquiry_with_wrong_credentials_is_unknown(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    authorized(mpgs_fake)
    connector = make_connector(mpgs_fake, password="nope")
    try:
        result = await connector.inquire_operation(op("capture", 1_000))
    finally:
        await connector.aclose()
    assert result.outcome == Outcome.UNKNOWN
    assert result.raw["http_status"] == 401


# -- inquire_payment ----------------------------------------------------------------------------


async def test_inquire_payment_authorized(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    result = await mpgs.inquire_payment(payment(refs={"order_id": ORDER}))
    sent = mpgs_fake.requests[-1]
    assert (sent.method, sent.path) == ("GET", f"{BASE}/order/{ORDER}")
    assert sent.headers["authorization"] == basic(f"merchant.{MERCHANT_ID}", API_PASSWORD)
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "MPGS order status AUTHORIZED"
    assert result.gateway_refs == {"order_id": ORDER, "transaction_id": AUTH}
    assert result.pg_params["result"] == "AUTHORIZED"
    assert result.pg_params["transaction_id"] == AUTH
    assert result.raw["totalAuthorizedAmount"] == "100.000"


async def test_inquire_payment_purchase(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    paid(mpgs_fake)
    result = await mpgs.inquire_payment(payment(mode="purchase"))
    assert result.outcome == Outcome.SUCCESS
    assert result.raw["status"] == "CAPTURED"


async def test_inquire_payment_only_authorized_is_not_a_purchase(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    authorized(mpgs_fake)
    result = await mpgs.inquire_payment(payment(mode="purchase"))
    assert result.outcome == Outcome.PENDING


async def test_inquire_payment_voided(mpgs_fake: FakeMpgs, mpgs: MpgsConnector) -> None:  # noqa: F811
    authorized(mpgs_fake)
    await mpgs.void(op("void", 100_000))
    result = await mpgs.inquire_payment(payment())
    assert result.outcome == Outcome.FAILED
    assert result.raw["status"] == "CANCELLED"


async def test_inquire_payment_unknown_order_is_pending(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    result = await mpgs.inquire_payment(payment())
    assert result.outcome == Outcome.PENDING


async def test_inquire_payment_order_id_defaults_to_the_reference(
    mpgs_fake: FakeMpgs,
    mpgs: MpgsConnector,  # noqa: F811
) -> None:
    pay = payment(refs={})
    mpgs_fake.add_order(pay.reference_number, "100.000", "KWD")
    result = await mpgs.inquire_payment(pay)
    assert result.outcome == Outcome.SUCCESS
    assert mpgs_fake.requests[-1].path == f"{BASE}/order/{pay.reference_number}"


async def test_inquire_payment_without_answer(
    mpgs_fake: FakeMpgs, impatient: MpgsConnector
) -> None:  # noqa: F811
    authorized(mpgs_fake)
    mpgs_fake.fail_next("500", method="GET")
    assert (await impatient.inquire_payment(payment())).outcome == Outcome.UNKNOWN
    mpgs_fake.fail_next("timeout", method="GET")
    assert (await impatient.inquire_payment(payment())).outcome == Outcome.UNKNOWN


# -- a reply that does not match what was sent --------------------------------------------------


def test_reply_for_another_amount_is_unknown() -> None:
    request = op("capture", 60_000)
    reply = successful_capture_response(
        MERCHANT_ID, {"id": ORDER}, request.reference_number, Decimal("6.000"), "KWD"
    )
    result = transaction_result(request, ORDER, Reply(201, t.decode_json(render(reply))))
    assert result.outcome == Outcome.UNKNOWN
    assert "amount" in result.message
    fine = successful_capture_response(
        MERCHANT_ID, {"id": ORDER}, request.reference_number, Decimal("60.000"), "KWD"
    )
    ok = transaction_result(request, ORDER, Reply(201, t.decode_json(render(fine))))
    assert ok.outcome == Outcome.SUCCESS


# -- the status map -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "code", "cause", "outcome"),
    [
        ("SUCCESS", "APPROVED", None, Outcome.SUCCESS),
        ("SUCCESS", "APPROVED_AUTO", None, Outcome.SUCCESS),
        ("SUCCESS", "APPROVED_PENDING_SETTLEMENT", None, Outcome.SUCCESS),
        ("SUCCESS", "PENDING", None, Outcome.PENDING),
        ("SUCCESS", "SUBMITTED", None, Outcome.PENDING),
        ("SUCCESS", "SOMETHING_NEW", None, Outcome.PENDING),
        ("SUCCESS", None, None, Outcome.PENDING),
        ("SUCCESS", "DECLINED", None, Outcome.UNKNOWN),
        ("SUCCESS", "TIMED_OUT", None, Outcome.UNKNOWN),
        ("FAILURE", "DECLINED", None, Outcome.FAILED),
        ("FAILURE", "INSUFFICIENT_FUNDS", None, Outcome.FAILED),
        ("FAILURE", "APPROVED", None, Outcome.FAILED),
        ("PENDING", "SUBMITTED", None, Outcome.PENDING),
        ("UNKNOWN", "TIMED_OUT", None, Outcome.UNKNOWN),
        ("ERROR", None, "INVALID_REQUEST", Outcome.FAILED),
        ("ERROR", None, "REQUEST_REJECTED", Outcome.FAILED),
        ("ERROR", None, "SERVER_BUSY", Outcome.UNKNOWN),
        ("ERROR", None, "SERVER_FAILED", Outcome.UNKNOWN),
        ("ERROR", None, "NEW_CAUSE", Outcome.UNKNOWN),
        ("SOMETHING_ELSE", "APPROVED", None, Outcome.PENDING),
        (None, "APPROVED", None, Outcome.PENDING),
    ],
)
def test_transaction_outcome(
    result: str | None, code: str | None, cause: str | None, outcome: Outcome
) -> None:
    assert t.transaction_outcome(result, code, cause) == outcome


def test_status_maps_never_default_to_success() -> None:
    for code in t.GATEWAY_CODE_OUTCOME:
        expected = t.GATEWAY_CODE_OUTCOME[code]
        got = t.transaction_outcome("SUCCESS", code)
        assert got == (Outcome.UNKNOWN if expected == Outcome.FAILED else expected)
        assert t.transaction_outcome("FAILURE", code) == Outcome.FAILED
    successes = {c for c, o in t.GATEWAY_CODE_OUTCOME.items() if o == Outcome.SUCCESS}
    assert successes == {"APPROVED", "APPROVED_AUTO", "APPROVED_PENDING_SETTLEMENT"}
    assert t.order_outcome("BRAND_NEW_STATUS", "authorize") == Outcome.PENDING
    assert t.order_outcome(None, "purchase") == Outcome.PENDING


@pytest.mark.parametrize(
    ("status", "mode", "outcome"),
    [
        ("AUTHORIZED", "authorize", Outcome.SUCCESS),
        ("AUTHORIZED", "purchase", Outcome.PENDING),
        ("CAPTURED", "purchase", Outcome.SUCCESS),
        ("PARTIALLY_CAPTURED", "authorize", Outcome.SUCCESS),
        ("REFUNDED", "purchase", Outcome.SUCCESS),
        ("PARTIALLY_REFUNDED", "purchase", Outcome.SUCCESS),
        ("VOID_AUTHORIZATION", "authorize", Outcome.FAILED),
        ("CANCELLED", "authorize", Outcome.FAILED),
        ("FAILED", "purchase", Outcome.FAILED),
        ("INITIATED", "purchase", Outcome.PENDING),
        ("AUTHENTICATION_INITIATED", "purchase", Outcome.PENDING),
    ],
)
def test_order_outcome(status: str, mode: str, outcome: Outcome) -> None:
    assert t.order_outcome(status, mode) == outcome


# -- the fake refuses what the gateway refuses (so the connector's shapes are really checked) ---


@pytest.mark.parametrize(
    ("body", "field", "validation"),
    [
        (
            {"apiOperation": "CAPTURE", "transaction": {"amount": "1.0001", "currency": "KWD"}},
            "transaction.amount",
            "INVALID",
        ),
        (
            {"apiOperation": "CAPTURE", "transaction": {"amount": "1.001", "currency": "USD"}},
            "transaction.amount",
            "INVALID",
        ),
        (
            {"apiOperation": "CAPTURE", "transaction": {"amount": "1e3", "currency": "KWD"}},
            "transaction.amount",
            "INVALID",
        ),
        (
            {"apiOperation": "CAPTURE", "transaction": {"amount": "-1.000", "currency": "KWD"}},
            "transaction.amount",
            "INVALID",
        ),
        (
            {"apiOperation": "CAPTURE", "transaction": {"amount": "0.000", "currency": "KWD"}},
            "transaction.amount",
            "INVALID",
        ),
        (
            {"apiOperation": "CAPTURE", "transaction": {"currency": "KWD"}},
            "transaction.amount",
            "MISSING",
        ),
        (
            {"apiOperation": "REFUND", "transaction": {"amount": "1.000"}},
            "transaction.currency",
            "MISSING",
        ),
        ({"transaction": {"amount": "1.000", "currency": "KWD"}}, "apiOperation", "MISSING"),
        (
            {"apiOperation": "PAY", "transaction": {"amount": "1.000", "currency": "KWD"}},
            "apiOperation",
            "INVALID",
        ),
        ({"apiOperation": "VOID", "transaction": {}}, "transaction.targetTransactionId", "MISSING"),
        (
            {
                "apiOperation": "VOID",
                "transaction": {"targetTransactionId": AUTH, "amount": "1.000"},
            },
            "transaction.amount",
            "UNSUPPORTED",
        ),
        (
            {
                "apiOperation": "REFUND",
                "transaction": {"amount": "1.000", "currency": "KWD"},
                "sourceOfFunds": {"type": "CARD"},
            },
            "sourceOfFunds",
            "UNSUPPORTED",
        ),
    ],
)
async def test_fake_rejects_malformed_requests(
    mpgs_fake: FakeMpgs,
    body: dict[str, Any],  # noqa: F811
    field: str,
    validation: str,
) -> None:
    authorized(mpgs_fake)
    async with httpx.AsyncClient(base_url=mpgs_fake.url) as http:
        reply = await http.put(
            f"{BASE}/order/{ORDER}/transaction/T1",
            json=body,
            headers={"Authorization": basic(f"merchant.{MERCHANT_ID}", API_PASSWORD)},
        )
    assert reply.status_code == 400
    assert reply.json()["result"] == "ERROR"
    assert reply.json()["error"]["cause"] == "INVALID_REQUEST"
    assert reply.json()["error"]["field"] == field
    assert reply.json()["error"]["validationType"] == validation
    assert mpgs_fake.transaction(ORDER, "T1") is None


async def test_fake_requires_basic_auth_as_merchant_user(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    authorized(mpgs_fake)
    async with httpx.AsyncClient(base_url=mpgs_fake.url) as http:
        for header in (None, basic(MERCHANT_ID, API_PASSWORD), f"Bearer {API_PASSWORD}"):
            headers = {"Authorization": header} if header else {}
            reply = await http.get(f"{BASE}/order/{ORDER}", headers=headers)
            assert reply.status_code == 401
            assert reply.json() == {
                "error": {"cause": "REQUEST_REJECTED", "explanation": "Invalid credentials."},
                "result": "ERROR",
            }


# -- webhooks -----------------------------------------------------------------------------------

WEBHOOK_SECRET = "6F1D2C3B4A59687766554433221100FF"


def notification_body(
    ref: str = "REF123", result: str = "SUCCESS", code: str = "APPROVED"
) -> bytes:
    return render(
        {
            "merchant": MERCHANT_ID,
            "result": result,
            "order": {
                "id": ORDER,
                "amount": Decimal("100.000"),
                "currency": "KWD",
                "status": "CAPTURED",
            },
            "response": {"gatewayCode": code},
            "transaction": {
                "id": ref,
                "type": "CAPTURE",
                "amount": Decimal("100.000"),
                "currency": "KWD",
            },
        }
    )


def test_webhook_valid() -> None:
    headers = {
        "X-Notification-Secret": WEBHOOK_SECRET,
        "X-Notification-Id": "n-1",
        "X-Notification-Attempt": "1",
    }
    assert verify_notification(headers, WEBHOOK_SECRET)
    assert verify_notification({"x-notification-secret": WEBHOOK_SECRET}, WEBHOOK_SECRET)
    parsed = verify_and_parse(headers, notification_body(), WEBHOOK_SECRET, merchant_id=MERCHANT_ID)
    assert parsed == Notification("REF123", Outcome.SUCCESS)
    reference, status = parsed
    assert (reference, status) == ("REF123", Outcome.SUCCESS)
    assert notification_key(notification_body()) == (ORDER, "REF123")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Notification-Secret": WEBHOOK_SECRET[:-1] + "E"},  # tampered
        {"X-Notification-Secret": WEBHOOK_SECRET + " "},
        {"X-Notification-Secret": ""},
        {"X-Notification-Secret": "é" + WEBHOOK_SECRET},
        {"X-Other": WEBHOOK_SECRET},  # missing
    ],
)
def test_webhook_tampered_or_missing(headers: dict[str, str]) -> None:
    assert not verify_notification(headers, WEBHOOK_SECRET)
    with pytest.raises(InvalidNotification):
        verify_and_parse(headers, notification_body(), WEBHOOK_SECRET)


def test_webhook_wrong_or_unset_secret() -> None:
    headers = {"X-Notification-Secret": WEBHOOK_SECRET}
    assert not verify_notification(headers, "another-secret")
    assert not verify_notification(headers, "")
    assert not verify_notification({"X-Notification-Secret": ""}, "")


@pytest.mark.parametrize(
    ("result", "code", "status"),
    [
        ("SUCCESS", "APPROVED", Outcome.SUCCESS),
        ("FAILURE", "DECLINED", Outcome.FAILED),
        ("PENDING", "SUBMITTED", Outcome.PENDING),
        ("SUCCESS", "NEW_CODE", Outcome.PENDING),
    ],
)
def test_webhook_status(result: str, code: str, status: Outcome) -> None:
    assert parse_notification(notification_body("R9", result, code)) == ("R9", status)


def test_webhook_unreadable_or_foreign() -> None:
    with pytest.raises(InvalidNotification):
        parse_notification(b"<html>")
    with pytest.raises(InvalidNotification):
        parse_notification({"merchant": MERCHANT_ID, "result": "SUCCESS"})
    with pytest.raises(InvalidNotification):
        parse_notification(notification_body(), merchant_id="SOMEONE_ELSE")


# -- secrets and card data stay out of logs and raw replies -------------------------------------


async def test_no_credentials_or_card_data_in_logs_or_raw(
    mpgs_fake: FakeMpgs,
    caplog: pytest.LogCaptureFixture,  # noqa: F811
) -> None:
    for name in ("", "httpx", "httpcore", "payops"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    mpgs_fake.leak_card_data = True  # a gateway that echoes a full card number and its CVV
    authorized(mpgs_fake)
    results: list[GatewayResult] = []
    connector = make_connector(mpgs_fake, timeout=SHORT_TIMEOUT)
    try:
        capture = op("capture", 10_000)
        results.append(await connector.capture(capture))
        results.append(await connector.refund(op("refund", 1_000)))
        results.append(await connector.inquire_operation(capture))
        results.append(await connector.inquire_operation(op("refund", 5)))
        results.append(await connector.inquire_payment(payment()))
        mpgs_fake.fail_next("reset")
        results.append(await connector.capture(op("capture", 1_000)))
        mpgs_fake.fail_next("timeout")
        results.append(await connector.capture(op("capture", 1_000)))
        results.append(await connector.void(op("void", 100_000)))
    finally:
        await connector.aclose()
    wrong = make_connector(mpgs_fake, password="wrong-password-123")
    try:
        results.append(await wrong.capture(op("capture", 1_000)))
    finally:
        await wrong.aclose()

    assert results[0].outcome == Outcome.SUCCESS
    assert any(record.name.startswith("httpx") for record in caplog.records)
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    token = base64.b64encode(f"merchant.{MERCHANT_ID}:{API_PASSWORD}".encode()).decode()
    for secret in (API_PASSWORD, token, "wrong-password-123", FULL_CARD):
        assert secret not in logged
        for result in results:
            dumped = json.dumps([result.raw, result.pg_params, result.message])
            assert secret not in dumped
    for result in results:
        assert "securityCode" not in json.dumps(result.raw)
    assert results[0].raw["sourceOfFunds"]["provided"]["card"]["number"] == "512345xxxxxx0008"
    assert results[0].pg_params["card_number"] == "512345xxxxxx0008"
