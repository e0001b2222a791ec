"""The N-Genius connector against the fake gateway over real loopback HTTP.

Each test checks the exact request the connector sent (recorded by the fake) and the
GatewayResult it made of the answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import socket
import time
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from payops.connectors.base import (
    ConnectorConfig,
    GatewayResult,
    NotificationRejected,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.ngenius import tokens as token_cache
from payops.connectors.ngenius import transformers as t
from payops.connectors.ngenius.connector import NgeniusConnector
from payops.connectors.ngenius.notifications import (
    WebhookError,
    parse_event,
    parse_webhook,
    verify_and_parse,
    verify_webhook,
)
from payops.connectors.ngenius.tokens import token_cache_key
from payops.connectors.registry import build_connector, connector_class
from tests.connectors.ngenius.fake_server import (
    API_KEY,
    CARD_TOKEN,
    OUTLET,
    FakeNgenius,
    declined_response,
    error_response,
    invalid_credentials_response,
    ngenius_fake,  # noqa: F401 - fixtures
    ngenius_server,  # noqa: F401
    order_status_response,
    reversed_payment_response,
    successful_capture_response,
    successful_refund_response,
)
from tests.helpers import once, operation_request

# Generous for ordinary calls (the test machine may be loaded); short where a hang is the point.
TIMEOUT = 5.0
SHORT = 0.5
IDENTITY = "application/vnd.ni-identity.v1+json"
PAYMENT = "application/vnd.ni-payment.v2+json"


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    token_cache.clear_token_cache()


@pytest.fixture
def fake(ngenius_fake: FakeNgenius) -> FakeNgenius:  # noqa: F811
    ngenius_fake.hang_seconds = 3.0  # cut short when the fake stops
    return ngenius_fake


async def prewarm(fake: FakeNgenius, payment: PaymentRef) -> None:
    """Fetch and cache a token with a generous timeout, so a short-timeout call makes only the
    call under test."""
    conn = connector(fake)
    await run(conn, conn.inquire_payment(payment))


def connector(
    fake: FakeNgenius,
    *,
    api_key: str = API_KEY,
    outlet: str = OUTLET,
    timeout: float = TIMEOUT,
    **options: Any,
) -> NgeniusConnector:
    config = ConnectorConfig(
        pg_code="ngenius-aed",
        is_sandbox=True,
        credentials={"api_key": api_key, "outlet_reference": outlet},
        timeout_seconds=timeout,
        options={"base_url": fake.url, **options},
    )
    built = build_connector("ngenius", config)
    assert isinstance(built, NgeniusConnector)
    return built


def paid(
    fake: FakeNgenius,
    action: str = "AUTH",
    value: int = 10000,
    currency: str = "AED",
    *,
    with_payment_ref: bool = True,
    state: str | None = None,
) -> PaymentRef:
    order, payment = fake.create_order(action, value, currency, state)
    refs = {"order_reference": order}
    if with_payment_ref:
        refs["payment_reference"] = payment
    return PaymentRef(
        "ATTEMPT0000000001", value, currency, "authorize" if action == "AUTH" else "purchase", refs
    )


def op(
    kind: str,
    amount: int,
    payment: PaymentRef,
    reference: str = "OPREF00000000001",
    currency: str | None = None,
) -> OperationRequest:
    return operation_request(kind, amount, payment, reference=reference, currency=currency)


run = once  # run(conn, conn.capture(request)): one call, then the connector is closed


def order_path(payment: PaymentRef) -> str:
    return f"/transactions/outlets/{OUTLET}/orders/{payment.gateway_refs['order_reference']}"


def payment_path(fake: FakeNgenius, payment: PaymentRef) -> str:
    pay = fake.payment(payment.gateway_refs["order_reference"])
    return f"{order_path(payment)}/payments/{pay.ref}"


def expected_raw(
    fake: FakeNgenius, payment: PaymentRef, canned: Any = successful_capture_response
) -> dict[str, Any]:
    order = fake.orders[payment.gateway_refs["order_reference"]]
    return t.REDACTION.scrub(canned(fake.url, order, fake.payment(order.ref)))


def issued_token(fake: FakeNgenius) -> str:
    assert len(fake.tokens) >= 1
    return list(fake.tokens)[-1]


def assert_token_request(fake: FakeNgenius, index: int = 0) -> None:
    token_calls = fake.calls("POST", "/identity/auth/access-token")
    call = token_calls[index]
    assert call.headers["authorization"] == f"Basic {API_KEY}"
    assert call.headers["content-type"] == IDENTITY
    assert call.body == b""


def assert_payment_headers(fake: FakeNgenius, call: Any, *, token: str | None = None) -> None:
    assert call.headers["authorization"] == f"Bearer {token or issued_token(fake)}"
    assert call.headers["content-type"] == PAYMENT
    assert call.headers["accept"] == PAYMENT


# -- the connector's declaration -------------------------------------------------------------------


def test_registry_and_declaration() -> None:
    cls = connector_class("ngenius")
    assert cls is NgeniusConnector
    assert cls.capabilities == frozenset({"capture", "refund", "void", "inquiry"})
    assert cls.required_credentials == ("api_key", "outlet_reference")


@pytest.mark.parametrize(
    ("sandbox", "options", "host"),
    [
        (True, {}, "https://api-gateway.sandbox.ngenius-payments.com"),
        (False, {}, "https://api-gateway.ngenius-payments.com"),
        (True, {"region": "ksa"}, "https://api-gateway.sandbox.ksa.ngenius-payments.com"),
        (False, {"base_url": "https://pay.example-bank.ae/"}, "https://pay.example-bank.ae"),
    ],
)
def test_host_selection(sandbox: bool, options: dict[str, Any], host: str) -> None:
    conn = NgeniusConnector(ConnectorConfig("ng", sandbox, {}, 1.0, options))
    assert conn.base_url == host


# -- capture ---------------------------------------------------------------------------------------


async def test_capture_success_exact_request(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 4000, payment)))

    assert [(r.method, r.path) for r in fake.requests] == [
        ("POST", "/identity/auth/access-token"),
        ("POST", f"{payment_path(fake, payment)}/captures"),
    ]
    assert_token_request(fake)
    capture_call = fake.requests[1]
    assert_payment_headers(fake, capture_call)
    assert capture_call.json == {"amount": {"currencyCode": "AED", "value": 4000}}

    pay = fake.payment(payment.gateway_refs["order_reference"])
    assert pay.state == "PARTIALLY_CAPTURED"
    capture_ref = pay.captures[0].ref
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Capture successful"
    assert result.raw == expected_raw(fake, payment)
    assert result.raw["_embedded"]["cnp:capture"][0]["state"] == "SUCCESS"
    assert result.pg_params == {
        "ref": payment.gateway_refs["order_reference"],
        "payment_id": pay.ref,
        "transaction_id": capture_ref,
        "result": "success",
        "pg_message": "Capture successful",
        "card_type": "VISA",
        "card_holder": "Test Holder",
        "card_number": "************1111",
        "card_expiry_year": "2029",
        "card_expiry_month": "04",
        "auth_code": "AB12CD",
        "rrn": "412345678901",
    }
    assert result.gateway_refs == {
        "order_reference": payment.gateway_refs["order_reference"],
        "payment_reference": pay.ref,
        "capture_reference": capture_ref,
    }


@pytest.mark.parametrize(
    ("currency", "authorised", "minor", "value"),
    [
        ("AED", 10000, 1234, 1234),  # 12.34 AED
        ("KWD", 100000, 1234, 1234),  # 1.234 KWD: three decimals
        ("JPY", 1000, 500, 500),  # no decimals
        ("BHD", 50000, 1, 1),  # 0.001 BHD
    ],
)
async def test_capture_amount_is_integer_minor_units(
    fake: FakeNgenius, currency: str, authorised: int, minor: int, value: int
) -> None:
    payment = paid(fake, value=authorised, currency=currency)
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", minor, payment)))
    assert result.outcome == Outcome.SUCCESS, (result.message, result.raw)
    body = fake.calls("POST", "/captures")[0].body
    assert (
        body
        == json.dumps(
            {"amount": {"currencyCode": currency, "value": value}}, separators=(",", ":")
        ).encode()
    )


async def test_amount_exponent_override_and_unrepresentable_amount(fake: FakeNgenius) -> None:
    """If N-Genius is configured to count KWD in two decimals (VERIFY), 1.230 KWD is sent as 123
    and 1.234 KWD, which it cannot express, is refused before anything is sent."""
    payment = paid(fake, value=10000, currency="KWD")
    conn = connector(fake, amount_exponents={"KWD": 2})
    assert (await run(conn, conn.capture(op("capture", 1230, payment)))).outcome == Outcome.SUCCESS
    assert fake.calls("POST", "/captures")[0].json["amount"]["value"] == 123
    conn = connector(fake, amount_exponents={"KWD": 2})
    refused = await run(conn, conn.capture(op("capture", 1234, payment)))
    assert refused.outcome == Outcome.FAILED
    assert "more decimals than N-Genius accepts" in refused.message
    assert len(fake.calls("POST", "/captures")) == 1


async def test_capture_without_payment_reference_follows_the_order(fake: FakeNgenius) -> None:
    payment = paid(fake, with_payment_ref=False)
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 10000, payment)))
    assert result.outcome == Outcome.SUCCESS
    assert [(r.method, r.path) for r in fake.requests[1:]] == [
        ("GET", order_path(payment)),
        ("POST", f"{payment_path(fake, payment)}/captures"),
    ]
    assert fake.payment(payment.gateway_refs["order_reference"]).state == "CAPTURED"


async def test_a_payment_without_order_reference_is_refused_before_sending(
    fake: FakeNgenius,
) -> None:
    payment = PaymentRef("A", 10000, "AED", "authorize", {})
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 100, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "The payment has no N-Genius order_reference"
    assert fake.operations() == []


async def test_several_captures_up_to_the_authorisation_then_refused(fake: FakeNgenius) -> None:
    payment = paid(fake)
    for amount in (6000, 4000):
        conn = connector(fake)
        assert (
            await run(conn, conn.capture(op("capture", amount, payment)))
        ).outcome == Outcome.SUCCESS
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 1, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "A payment in state CAPTURED cannot be captured"
    assert result.raw == error_response(400, result.message, "invalidPaymentState")
    assert result.pg_params["result"] == "error"


async def test_capture_beyond_the_authorisation_is_refused(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 10001, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "The capture amount exceeds the authorised amount"
    assert fake.payment(payment.gateway_refs["order_reference"]).captures == []


async def test_no_idempotency_key_so_a_repeat_captures_twice(fake: FakeNgenius) -> None:
    """N-Genius has no idempotency key: the same capture sent twice is two captures. The
    connector therefore never re-sends a POST that may have reached the gateway."""
    payment = paid(fake)
    for _ in range(2):
        conn = connector(fake)
        await run(conn, conn.capture(op("capture", 3000, payment, reference="SAMEREFERENCE001")))
    assert len(fake.payment(payment.gateway_refs["order_reference"]).captures) == 2


# -- refund ----------------------------------------------------------------------------------------


async def test_refund_of_a_capture_exact_request(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    await run(conn, conn.capture(op("capture", 8000, payment)))
    fake.requests.clear()
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 2500, payment)))

    pay = fake.payment(payment.gateway_refs["order_reference"])
    capture_ref = pay.captures[0].ref
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", order_path(payment)),
        ("POST", f"{payment_path(fake, payment)}/captures/{capture_ref}/refund"),
    ]
    refund_call = fake.requests[1]
    assert_payment_headers(fake, refund_call)
    assert refund_call.json == {"amount": {"currencyCode": "AED", "value": 2500}}
    assert fake.calls("POST", "/access-token") == []  # the cached token was reused
    assert result.outcome == Outcome.SUCCESS
    assert result.raw == expected_raw(fake, payment, successful_refund_response)
    assert result.pg_params["transaction_id"] == pay.refunds[0].ref
    assert result.gateway_refs["refund_reference"] == pay.refunds[0].ref
    assert pay.state == "PARTIALLY_REFUNDED"


async def test_refund_of_a_purchase_uses_the_payment_refund_link(fake: FakeNgenius) -> None:
    payment = paid(fake, "PURCHASE", 5000)
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 5000, payment)))
    assert result.outcome == Outcome.SUCCESS
    assert fake.requests[-1].method == "POST"
    assert fake.requests[-1].path == f"{payment_path(fake, payment)}/captures/sale/refund"
    assert fake.requests[-1].json == {"amount": {"currencyCode": "AED", "value": 5000}}
    assert fake.payment(payment.gateway_refs["order_reference"]).state == "REFUNDED"


async def test_without_a_refund_link_nothing_is_sent(fake: FakeNgenius) -> None:
    # Before: the connector built an undocumented ``…/payments/{p}/refund`` and posted to it.
    payment = paid(fake, "PURCHASE", 5000)
    pay = fake.payment(payment.gateway_refs["order_reference"])
    pay.refund_link = False
    conn = connector(fake)
    partial = await run(conn, conn.refund(op("refund", 2000, payment)))
    assert partial.outcome == Outcome.FAILED
    assert "no cnp:refund link" in partial.message and "full amount" in partial.message
    assert fake.calls("POST", "/refund") == [] and fake.calls("PUT", "/cancel") == []
    assert pay.state == "PURCHASED" and pay.refunds == []


async def test_a_full_refund_without_a_refund_link_reverses_the_purchase(
    fake: FakeNgenius,
) -> None:
    payment = paid(fake, "PURCHASE", 5000)
    pay = fake.payment(payment.gateway_refs["order_reference"])
    pay.refund_link = False
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 5000, payment)))
    assert result.outcome == Outcome.SUCCESS, result.message
    assert result.message == "Purchase reversed (full refund)"
    [call] = fake.calls("PUT", "/cancel")
    assert call.path == f"{payment_path(fake, payment)}/cancel" and call.body == b""
    assert pay.state == "REVERSED"
    # found again by inquiry after a lost reply: the payment's state, not a refund child
    again = await run(conn, conn.inquire_operation(op("refund", 5000, payment)))
    assert again.outcome == Outcome.SUCCESS and again.gateway_refs["reversal"] is True


def test_event_names_and_china_union_pay_refund_ids() -> None:
    from payops.connectors.ngenius import transformers as nt

    for name in (
        "FULL_AUTH_REVERSAL_FAILED",
        "PURCHASE_REVERSAL_FAILED",
        "CAPTURE_VOID_FAILED",
        "REFUND_REQUEST_FAILED",
        "CANCELLATION_FAILED",
        "SOMETHING_NEW_FAILED",
    ):
        assert nt.event_outcome(name) == Outcome.FAILED
    for name in ("CANCELLATION_REQUESTED", "PARTIAL_REFUND_REQUESTED", "REFUND_REQUESTED"):
        assert nt.event_outcome(name) == Outcome.PENDING
    cup = nt.Child.model_validate(
        {
            "_id": "urn:tnx:ignored",
            "state": "REQUESTED",
            "_links": {
                "cnp:china_union_pay_results": {"href": "https://x/refunds/7f3a-cup/cup-results"}
            },
        }
    )
    assert cup.ref == "7f3a-cup"


async def test_refund_of_a_sale_refunds_its_capture(fake: FakeNgenius) -> None:
    payment = paid(fake, "SALE", 7000)
    capture_ref = fake.payment(payment.gateway_refs["order_reference"]).captures[0].ref
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 1000, payment)))
    assert result.outcome == Outcome.SUCCESS
    assert fake.requests[-1].path.endswith(f"/captures/{capture_ref}/refund")


async def test_refund_beyond_the_captured_amount_is_refused(fake: FakeNgenius) -> None:
    payment = paid(fake, "PURCHASE", 5000)
    conn = connector(fake)
    await run(conn, conn.refund(op("refund", 3000, payment)))
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 2001, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "The refund amount exceeds the purchased amount"


async def test_refund_tries_the_next_capture_after_a_refusal(fake: FakeNgenius) -> None:
    payment = paid(fake)
    for _ in range(2):
        conn = connector(fake)
        await run(conn, conn.capture(op("capture", 5000, payment)))
    first, second = fake.payment(payment.gateway_refs["order_reference"]).captures
    conn = connector(fake)
    assert (await run(conn, conn.refund(op("refund", 3000, payment)))).outcome == Outcome.SUCCESS
    fake.requests.clear()
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 3000, payment)))
    assert result.outcome == Outcome.SUCCESS
    # the newest capture has only 2000 left: refused (nothing done), then the older one
    assert [r.path.rsplit("/", 2)[-2] for r in fake.calls("POST", "/refund")] == [
        second.ref,
        first.ref,
    ]


async def test_refund_no_single_capture_covers_the_amount(fake: FakeNgenius) -> None:
    payment = paid(fake)
    for amount in (4000, 4000):
        conn = connector(fake)
        await run(conn, conn.capture(op("capture", amount, payment)))
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 6000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "No single N-Genius capture covers 60.00 AED"
    assert fake.calls("POST", "/refund") == []


async def test_refund_requested_is_pending_until_settlement(fake: FakeNgenius) -> None:
    payment = paid(fake, "PURCHASE", 5000)
    fake.inject("refund", "queue")
    conn = connector(fake)
    result = await run(conn, conn.refund(op("refund", 2000, payment)))
    assert result.outcome == Outcome.PENDING
    assert result.raw["_embedded"]["cnp:refund"][0]["state"] == "REQUESTED"
    assert result.pg_params["result"] == "requested"

    request = op("refund", 2000, payment)
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(request))).outcome == Outcome.PENDING
    fake.settle_requested_refunds()
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(request))).outcome == Outcome.SUCCESS


# -- void ------------------------------------------------------------------------------------------


async def test_void_exact_request(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    result = await run(conn, conn.void(op("void", 10000, payment)))
    call = fake.requests[-1]
    assert (call.method, call.path) == ("PUT", f"{payment_path(fake, payment)}/cancel")
    assert call.body == b""
    assert_payment_headers(fake, call)
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Authorisation reversed"
    assert result.raw == expected_raw(fake, payment, reversed_payment_response)
    assert result.raw["state"] == "REVERSED"


async def test_void_without_payment_reference_uses_the_cancel_link(fake: FakeNgenius) -> None:
    payment = paid(fake, with_payment_ref=False)
    conn = connector(fake)
    result = await run(conn, conn.void(op("void", 10000, payment)))
    assert result.outcome == Outcome.SUCCESS
    assert [(r.method, r.path) for r in fake.requests[1:]] == [
        ("GET", order_path(payment)),
        ("PUT", f"{payment_path(fake, payment)}/cancel"),
    ]


async def test_void_after_capture_is_refused(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    await run(conn, conn.capture(op("capture", 100, payment)))
    conn = connector(fake)
    result = await run(conn, conn.void(op("void", 10000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == (
        "A payment in state PARTIALLY_CAPTURED with captures or refunds cannot be reversed"
    )
    assert fake.payment(payment.gateway_refs["order_reference"]).state == "PARTIALLY_CAPTURED"


async def test_void_twice_is_refused(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    await run(conn, conn.void(op("void", 10000, payment)))
    conn = connector(fake)
    result = await run(conn, conn.void(op("void", 10000, payment)))
    assert result.outcome == Outcome.FAILED
    assert "REVERSED" in result.message


# -- declines and faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
async def test_gateway_decline(fake: FakeNgenius, kind: str) -> None:
    payment = paid(fake, "SALE" if kind == "refund" else "AUTH")
    fake.inject(kind, "decline")
    conn = connector(fake)
    result = await run(conn, conn.run(op(kind, 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == f"The {kind} was declined by the acquirer"
    assert result.raw == declined_response(kind)


@pytest.mark.parametrize("kind", ["capture", "refund"])
async def test_child_in_a_failure_state(fake: FakeNgenius, kind: str) -> None:
    payment = paid(fake, "SALE" if kind == "refund" else "AUTH")
    fake.inject(kind, "child_failed")
    conn = connector(fake)
    result = await run(conn, conn.run(op(kind, 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == f"N-Genius reports the {kind} as FAILED"


@pytest.mark.parametrize("fault", ["timeout", "reset", "500", "malformed"])
@pytest.mark.parametrize("kind", ["capture", "refund", "void"])
@pytest.mark.parametrize("perform", [False, True], ids=["nothing-done", "done"])
async def test_faults_are_unknown(fake: FakeNgenius, fault: str, kind: str, perform: bool) -> None:
    payment = paid(fake, "SALE" if kind == "refund" else "AUTH")
    await prewarm(fake, payment)
    fake.inject(kind, fault, perform=perform)
    conn = connector(fake, timeout=SHORT if fault == "timeout" else TIMEOUT)
    started = time.monotonic()
    result = await run(conn, conn.run(op(kind, 1000, payment)))
    assert result.outcome == Outcome.UNKNOWN
    assert time.monotonic() - started < SHORT + 2
    assert result.pg_params == {}
    expected = {
        "timeout": {"error": "timeout"},
        "reset": {"error": "connection_error"},
        "500": {"status": 500, "error": "unparsable"},
        "malformed": {"status": 201 if kind != "void" else 200, "error": "unparsable"},
    }[fault]
    assert result.raw == expected


async def test_connection_refused_is_a_failure_nothing_was_sent(fake: FakeNgenius) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    payment = paid(fake)
    conn = connector(fake, base_url=f"http://127.0.0.1:{closed_port}")
    result = await run(conn, conn.capture(op("capture", 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert "nothing was sent" in result.message


@pytest.mark.parametrize("fault", ["timeout", "500", "malformed", "reset"])
async def test_token_exchange_failure_means_nothing_was_sent(fake: FakeNgenius, fault: str) -> None:
    payment = paid(fake)
    fake.inject("token", fault)
    conn = connector(fake, timeout=SHORT)
    result = await run(conn, conn.capture(op("capture", 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.raw["stage"] == "access-token"
    assert fake.calls("POST", "/captures") == []


async def test_order_lookup_failure_before_a_refund_means_nothing_was_sent(
    fake: FakeNgenius,
) -> None:
    payment = paid(fake, "PURCHASE", 5000)
    await prewarm(fake, payment)
    fake.inject("order", "timeout")
    conn = connector(fake, timeout=SHORT)
    result = await run(conn, conn.refund(op("refund", 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.raw["stage"] == "order-lookup"
    assert fake.calls("POST", "/refund") == []


# -- credentials and tokens ------------------------------------------------------------------------


async def test_wrong_api_key(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake, api_key="d3Jvbmcta2V5")
    result = await run(conn, conn.capture(op("capture", 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "N-Genius refused the API key: Invalid client credentials"
    assert result.raw == {
        "stage": "access-token",
        "status": 401,
        "body": invalid_credentials_response(),
    }
    assert [r.path for r in fake.requests] == ["/identity/auth/access-token"]
    conn = connector(fake, api_key="d3Jvbmcta2V5")
    inquiry = await run(conn, conn.inquire_payment(payment))
    assert inquiry.outcome == Outcome.UNKNOWN


async def test_wrong_outlet(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake, outlet="00000000-0000-0000-0000-000000000000")
    result = await run(conn, conn.capture(op("capture", 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "Outlet not found"


async def test_token_is_cached_across_connector_instances(fake: FakeNgenius) -> None:
    payment = paid(fake)
    for amount in (1000, 2000, 3000):
        conn = connector(fake)  # PayOps builds a connector per call
        assert (
            await run(conn, conn.capture(op("capture", amount, payment)))
        ).outcome == Outcome.SUCCESS
    assert len(fake.calls("POST", "/access-token")) == 1
    tokens = {call.headers["authorization"] for call in fake.calls("POST", "/captures")}
    assert tokens == {f"Bearer {issued_token(fake)}"}
    # the cache is keyed by host and a hash of the key, never the key itself
    keys = token_cache.cached_keys()
    assert keys == [token_cache_key(fake.url, API_KEY)]
    assert keys[0][1] == hashlib.sha256(API_KEY.encode()).hexdigest()
    assert API_KEY not in repr(keys)


async def test_concurrent_callers_share_one_token_exchange(fake: FakeNgenius) -> None:
    payments = [paid(fake) for _ in range(5)]
    conns = [connector(fake) for _ in payments]
    results = await asyncio.gather(
        *(c.inquire_payment(p) for c, p in zip(conns, payments, strict=True))
    )
    for conn in conns:
        await conn.aclose()
    assert {r.outcome for r in results} == {Outcome.SUCCESS}
    assert len(fake.calls("POST", "/access-token")) == 1


async def test_different_keys_or_hosts_get_their_own_tokens(fake: FakeNgenius) -> None:
    assert token_cache_key("https://a", "k1") != token_cache_key("https://a", "k2")
    assert token_cache_key("https://a", "k1") != token_cache_key("https://b", "k1")


async def test_expired_token_is_reissued_once(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    await run(conn, conn.capture(op("capture", 1000, payment)))
    old = issued_token(fake)
    fake.expire_tokens()
    fake.requests.clear()
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 2000, payment)))
    assert result.outcome == Outcome.SUCCESS
    new = issued_token(fake)
    assert new != old
    assert [
        (r.method, r.path.rsplit("/", 1)[-1], r.headers["authorization"]) for r in fake.requests
    ] == [
        ("POST", "captures", f"Bearer {old}"),  # 401: nothing done
        ("POST", "access-token", f"Basic {API_KEY}"),
        ("POST", "captures", f"Bearer {new}"),
    ]
    assert [c.value for c in fake.payment(payment.gateway_refs["order_reference"]).captures] == [
        1000,
        2000,
    ]


async def test_token_is_refreshed_before_it_expires(fake: FakeNgenius) -> None:
    fake.token_lifetime = 2  # refreshed after 1.6 s, before the gateway's 2 s
    payment = paid(fake)
    conn = connector(fake)
    await run(conn, conn.inquire_payment(payment))
    await asyncio.sleep(1.65)
    conn = connector(fake)
    assert (await run(conn, conn.inquire_payment(payment))).outcome == Outcome.SUCCESS
    statuses = [r.path for r in fake.requests]
    assert statuses.count("/identity/auth/access-token") == 2
    assert len(fake.calls("GET")) == 2  # no call was refused with 401


async def test_a_gateway_that_keeps_refusing_the_token_is_a_failure(fake: FakeNgenius) -> None:
    fake.token_lifetime = 0  # every token is born expired
    payment = paid(fake)
    conn = connector(fake)
    result = await run(conn, conn.capture(op("capture", 1000, payment)))
    assert result.outcome == Outcome.FAILED
    assert result.message == "Access token is missing, invalid or expired"
    assert len(fake.calls("POST", "/access-token")) == 2  # re-issued once, not more
    assert len(fake.calls("POST", "/captures")) == 2
    assert fake.payment(payment.gateway_refs["order_reference"]).captures == []


# -- the fake enforces the protocol (checked directly) ---------------------------------------------


async def _token_for(fake: FakeNgenius, http: httpx.AsyncClient) -> str:
    reply = await http.post(
        f"{fake.url}/identity/auth/access-token",
        headers={"Authorization": f"Basic {API_KEY}", "Content-Type": IDENTITY},
    )
    assert reply.status_code == 200
    assert set(reply.json()) == {
        "access_token",
        "expires_in",
        "refresh_expires_in",
        "refresh_token",
        "token_type",
    }
    return str(reply.json()["access_token"])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"amount": {"currencyCode": "AED", "value": "10.00"}},
            "amount.value must be an integer in minor units",
        ),
        (
            {"amount": {"currencyCode": "AED", "value": 10.5}},
            "amount.value must be an integer in minor units",
        ),
        (
            {"amount": {"currencyCode": "AED", "value": True}},
            "amount.value must be an integer in minor units",
        ),
        ({"amount": {"currencyCode": "AED", "value": 0}}, "amount.value must be greater than zero"),
        (
            {"amount": {"currencyCode": "USD", "value": 100}},
            "amount.currencyCode does not match the payment currency",
        ),
        ({"amount": {"value": 100}}, "amount.currencyCode and amount.value are required"),
        ({}, "amount.currencyCode and amount.value are required"),
    ],
)
async def test_fake_refuses_malformed_amounts(
    fake: FakeNgenius, body: dict[str, Any], message: str
) -> None:
    payment = paid(fake)
    async with httpx.AsyncClient() as http:
        token = await _token_for(fake, http)
        reply = await http.post(
            f"{fake.url}{payment_path(fake, payment)}/captures",
            json=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": PAYMENT,
                "Accept": PAYMENT,
            },
        )
    assert reply.status_code == 400
    assert reply.json()["errors"][0]["message"] == message


async def test_fake_refuses_wrong_and_expired_tokens_and_media_types(fake: FakeNgenius) -> None:
    payment = paid(fake)
    url = f"{fake.url}{payment_path(fake, payment)}/captures"
    body = {"amount": {"currencyCode": "AED", "value": 100}}
    async with httpx.AsyncClient() as http:
        wrong = await http.post(
            url,
            json=body,
            headers={
                "Authorization": "Bearer not-a-token",
                "Content-Type": PAYMENT,
                "Accept": PAYMENT,
            },
        )
        assert wrong.status_code == 401
        assert wrong.json()["errors"][0]["errorCode"] == "unauthorized"
        token = await _token_for(fake, http)
        plain_json = await http.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        assert plain_json.status_code == 415
        fake.expire_tokens()
        expired = await http.post(
            url,
            json=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": PAYMENT,
                "Accept": PAYMENT,
            },
        )
        assert expired.status_code == 401
        no_type = await http.post(
            f"{fake.url}/identity/auth/access-token", headers={"Authorization": f"Basic {API_KEY}"}
        )
        assert no_type.status_code == 415
        with_body = await http.post(
            f"{fake.url}/identity/auth/access-token",
            content=b"{}",
            headers={"Authorization": f"Basic {API_KEY}", "Content-Type": IDENTITY},
        )
        assert with_body.status_code == 400
    assert fake.payment(payment.gateway_refs["order_reference"]).captures == []


# -- inquiries -------------------------------------------------------------------------------------


async def test_inquire_operation_capture_done_and_not_done(fake: FakeNgenius) -> None:
    payment = paid(fake)
    await prewarm(fake, payment)
    fake.inject("capture", "timeout", perform=True)
    conn = connector(fake, timeout=SHORT)
    assert (await run(conn, conn.capture(op("capture", 2500, payment)))).outcome == Outcome.UNKNOWN
    conn = connector(fake)
    done = await run(conn, conn.inquire_operation(op("capture", 2500, payment)))
    assert done.outcome == Outcome.SUCCESS
    capture_ref = fake.payment(payment.gateway_refs["order_reference"]).captures[0].ref
    assert done.pg_params["transaction_id"] == capture_ref
    assert done.gateway_refs["capture_reference"] == capture_ref
    assert fake.requests[-1].method == "GET"
    assert fake.requests[-1].path == order_path(payment)
    assert "authorization" in fake.requests[-1].headers

    conn = connector(fake)
    absent = await run(conn, conn.inquire_operation(op("capture", 1000, payment)))
    assert absent.outcome == Outcome.FAILED
    assert absent.message == "N-Genius shows no capture of this amount: it was not performed"


async def test_inquire_operation_refund_pending_and_failed(fake: FakeNgenius) -> None:
    payment = paid(fake, "PURCHASE", 9000)
    fake.inject("refund", "child_failed")
    conn = connector(fake)
    await run(conn, conn.refund(op("refund", 1000, payment)))
    fake.inject("refund", "queue")
    conn = connector(fake)
    await run(conn, conn.refund(op("refund", 2000, payment)))
    conn = connector(fake)
    assert (
        await run(conn, conn.inquire_operation(op("refund", 1000, payment)))
    ).outcome == Outcome.FAILED
    conn = connector(fake)
    assert (
        await run(conn, conn.inquire_operation(op("refund", 2000, payment)))
    ).outcome == Outcome.PENDING


async def test_inquire_operation_same_amount_twice_is_ambiguous(fake: FakeNgenius) -> None:
    payment = paid(fake)
    for _ in range(2):
        conn = connector(fake)
        await run(conn, conn.capture(op("capture", 3000, payment)))
    conn = connector(fake)
    result = await run(conn, conn.inquire_operation(op("capture", 3000, payment)))
    assert result.outcome == Outcome.UNKNOWN
    assert "2 captures of this amount" in result.message


@dataclass(frozen=True)
class _RequestWithKnownIds(OperationRequest):
    known_gateway_ids: frozenset[str] = frozenset()


async def test_inquire_operation_leaves_out_children_of_other_operations(fake: FakeNgenius) -> None:
    """With the suggested hook (ids of children other operations already own), an earlier
    capture of the same amount no longer makes the answer ambiguous."""
    payment = paid(fake)
    conn = connector(fake)
    first = await run(conn, conn.capture(op("capture", 3000, payment)))
    known = frozenset({first.gateway_refs["capture_reference"]})
    base = op("capture", 3000, payment)
    request = _RequestWithKnownIds(
        base.operation,
        base.reference_number,
        base.amount,
        base.currency_code,
        base.payment,
        known_gateway_ids=known,
    )
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(request))).outcome == Outcome.FAILED
    conn = connector(fake)
    await run(conn, conn.capture(op("capture", 3000, payment)))
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(request))).outcome == Outcome.SUCCESS


async def test_inquire_operation_uses_the_child_an_earlier_answer_named(fake: FakeNgenius) -> None:
    """Two queued refunds of the same amount: the reconciler passes back the refund id the
    first answer gave (OperationRequest.gateway_refs), so each is followed exactly."""
    payment = paid(fake, "PURCHASE", 9000)
    answers = []
    for _ in range(2):
        fake.inject("refund", "queue")
        conn = connector(fake)
        answers.append(await run(conn, conn.refund(op("refund", 2000, payment))))
    first_ref = answers[0].gateway_refs["refund_reference"]
    base = op("refund", 2000, payment)
    request = OperationRequest(
        base.operation,
        base.reference_number,
        base.amount,
        base.currency_code,
        base.payment,
        gateway_refs={"refund_reference": first_ref},
    )
    conn = connector(fake)
    pending = await run(conn, conn.inquire_operation(request))
    assert pending.outcome == Outcome.PENDING
    assert pending.pg_params["transaction_id"] == first_ref
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(base))).outcome == Outcome.UNKNOWN  # ambiguous
    fake.settle_requested_refunds()
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(request))).outcome == Outcome.SUCCESS
    gone = OperationRequest(
        base.operation,
        base.reference_number,
        base.amount,
        base.currency_code,
        base.payment,
        gateway_refs={"refund_reference": "no-such-refund"},
    )
    conn = connector(fake)
    assert (await run(conn, conn.inquire_operation(gone))).outcome == Outcome.UNKNOWN


async def test_inquire_operation_void(fake: FakeNgenius) -> None:
    payment = paid(fake)
    conn = connector(fake)
    not_done = await run(conn, conn.inquire_operation(op("void", 10000, payment)))
    assert not_done.outcome == Outcome.FAILED
    fake.inject("void", "reset", perform=True)
    conn = connector(fake)
    assert (await run(conn, conn.void(op("void", 10000, payment)))).outcome == Outcome.UNKNOWN
    conn = connector(fake)
    done = await run(conn, conn.inquire_operation(op("void", 10000, payment)))
    assert done.outcome == Outcome.SUCCESS
    assert done.pg_params["result"] == "reversed"


@pytest.mark.parametrize("fault", ["timeout", "500", "malformed", "reset"])
async def test_inquiries_without_an_answer_are_unknown(fake: FakeNgenius, fault: str) -> None:
    payment = paid(fake)
    await prewarm(fake, payment)
    fake.inject("order", fault, times=2)
    timeout = SHORT if fault == "timeout" else TIMEOUT
    conn = connector(fake, timeout=timeout)
    assert (
        await run(conn, conn.inquire_operation(op("capture", 1, payment)))
    ).outcome == Outcome.UNKNOWN
    conn = connector(fake, timeout=timeout)
    assert (await run(conn, conn.inquire_payment(payment))).outcome == Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("action", "state", "outcome"),
    [
        ("AUTH", None, Outcome.SUCCESS),
        ("PURCHASE", None, Outcome.SUCCESS),
        ("SALE", None, Outcome.SUCCESS),
        ("AUTH", "AWAIT_3DS", Outcome.PENDING),
        ("AUTH", "STARTED", Outcome.PENDING),
        ("AUTH", "FAILED", Outcome.FAILED),
        ("AUTH", "DECLINED", Outcome.FAILED),
        ("AUTH", "REVERSED", Outcome.FAILED),
        ("AUTH", "SOMETHING_NEW", Outcome.PENDING),
    ],
)
async def test_inquire_payment(
    fake: FakeNgenius, action: str, state: str | None, outcome: Outcome
) -> None:
    payment = paid(fake, action, state=state)
    conn = connector(fake)
    result = await run(conn, conn.inquire_payment(payment))
    assert result.outcome == outcome
    order = fake.orders[payment.gateway_refs["order_reference"]]
    assert result.raw == t.REDACTION.scrub(order_status_response(fake.url, order))
    pay = fake.payment(order.ref)
    assert result.gateway_refs == {"order_reference": order.ref, "payment_reference": pay.ref}
    assert result.pg_params["payment_id"] == pay.ref
    assert result.pg_params["card_number"] == "************1111"


async def test_inquire_payment_unknown_order(fake: FakeNgenius) -> None:
    payment = PaymentRef(
        "A", 100, "AED", "purchase", {"order_reference": "11111111-2222-3333-4444-555555555555"}
    )
    conn = connector(fake)
    result = await run(conn, conn.inquire_payment(payment))
    assert result.outcome == Outcome.FAILED
    assert result.message == "Order not found"


def test_status_maps_are_exhaustive_and_never_succeed_by_default() -> None:
    documented = {
        "STARTED",
        "AWAIT_3DS",
        "PENDING",
        "AUTHORISED",
        "CAPTURED",
        "PARTIALLY_CAPTURED",
        "PURCHASED",
        "PARTIALLY_REFUNDED",
        "REFUNDED",
        "REVERSED",
        "FAILED",
        "DECLINED",
        "CANCELLED",
    }
    assert documented <= set(t.PAYMENT_STATES)
    assert documented <= set(t.VOID_STATES)
    assert {"SUCCESS", "REQUESTED"} <= set(t.CHILD_STATES)
    for unknown in ("", "NEW_STATE", None):
        assert t.payment_outcome(unknown) == Outcome.PENDING
        assert t.child_outcome(unknown) == Outcome.PENDING
        assert t.void_outcome(unknown) == Outcome.PENDING
        assert t.event_outcome(unknown) == Outcome.PENDING
    assert t.child_outcome("REQUESTED") == Outcome.PENDING
    assert t.payment_outcome("authorised") == Outcome.SUCCESS


# -- webhooks --------------------------------------------------------------------------------------

WEBHOOK_SECRET = "whk_9f1c2b7e4a0d4c5f8e3b6a1d2c7f0e9b"


def webhook_body(fake: FakeNgenius, event: str = "CAPTURED") -> bytes:
    payment = paid(fake, "SALE")
    order = fake.orders[payment.gateway_refs["order_reference"]]
    return json.dumps(
        {
            "eventId": "5b9d7a8e-0000-4000-8000-000000000001",
            "eventName": event,
            "outletId": OUTLET,
            "order": order_status_response(fake.url, order),
        }
    ).encode()


def test_webhook_valid(fake: FakeNgenius) -> None:
    body = webhook_body(fake)
    headers = {"x-payops-webhook-secret": WEBHOOK_SECRET, "content-type": "application/json"}
    assert verify_webhook(headers, secret=WEBHOOK_SECRET)
    reference, status = parse_webhook(body)
    assert reference == json.loads(body)["order"]["reference"]
    assert status == "CAPTURED"
    event = verify_and_parse(headers, body, secret=WEBHOOK_SECRET)
    assert event.outcome == Outcome.SUCCESS
    assert event.event_id == "5b9d7a8e-0000-4000-8000-000000000001"
    assert event.payment_state == "CAPTURED"
    custom = {"X-Merchant-Hook": WEBHOOK_SECRET}
    assert verify_webhook(custom, secret=WEBHOOK_SECRET, header_name="x-merchant-hook")


@pytest.mark.parametrize(
    "headers",
    [
        {"X-PayOps-Webhook-Secret": WEBHOOK_SECRET[:-1] + "x"},  # tampered value
        {"X-PayOps-Webhook-Secret": WEBHOOK_SECRET + " "},
        {"X-PayOps-Webhook-Secret": ""},
        {},  # no header at all
        {"X-Other": WEBHOOK_SECRET},
    ],
    ids=["tampered", "padded", "empty", "missing", "other-header"],
)
def test_webhook_not_authentic(fake: FakeNgenius, headers: dict[str, str]) -> None:
    assert not verify_webhook(headers, secret=WEBHOOK_SECRET)
    with pytest.raises(WebhookError):
        verify_and_parse(headers, webhook_body(fake), secret=WEBHOOK_SECRET)


def test_webhook_wrong_or_unset_secret(fake: FakeNgenius) -> None:
    headers = {"X-PayOps-Webhook-Secret": WEBHOOK_SECRET}
    assert not verify_webhook(headers, secret="another-secret-entirely")
    assert not verify_webhook({"X-PayOps-Webhook-Secret": ""}, secret="")


def test_connector_parse_notification(fake: FakeNgenius) -> None:
    body = webhook_body(fake, "REFUND_REQUESTED")
    config = ConnectorConfig(
        "ng",
        True,
        {"api_key": API_KEY, "outlet_reference": OUTLET},
        options={"base_url": fake.url, "webhook_header": "X-Hook"},
        webhook_secret=WEBHOOK_SECRET,
    )
    conn = NgeniusConnector(config)
    notice = conn.parse_notification({"x-hook": WEBHOOK_SECRET}, body)
    assert notice.gateway_refs == {"order_reference": json.loads(body)["order"]["reference"]}
    assert notice.reference is None
    for headers in ({"x-hook": "wrong"}, {"X-PayOps-Webhook-Secret": WEBHOOK_SECRET}, {}):
        with pytest.raises(NotificationRejected):
            conn.parse_notification(headers, body)
    with pytest.raises(NotificationRejected):
        conn.parse_notification({"x-hook": WEBHOOK_SECRET}, b"{")
    unset = NgeniusConnector(ConnectorConfig("ng", True, {}, options={"webhook_header": "X-Hook"}))
    with pytest.raises(NotificationRejected):
        unset.parse_notification({"x-hook": ""}, body)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        b'{"eventName": "CAPTURED"}',
        b'{"order": {"reference": "x"}}',
        b'{"eventName": "CAPTURED", "order": {}}',
    ],
)
def test_webhook_unreadable_body(body: bytes) -> None:
    with pytest.raises(WebhookError):
        parse_event(body)


# -- secrets stay out of logs and results ----------------------------------------------------------


async def test_credentials_and_card_data_never_logged_nor_returned(
    fake: FakeNgenius, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "payops"):
        caplog.set_level(logging.DEBUG, logger=name)
    results: list[GatewayResult] = []
    auth, sale = paid(fake), paid(fake, "SALE")
    for request in (op("capture", 1000, auth), op("refund", 500, sale)):
        conn = connector(fake)
        results.append(await run(conn, conn.run(request)))
    fake.expire_tokens()  # a 401 and a re-issue, logged at DEBUG
    conn = connector(fake)
    results.append(await run(conn, conn.inquire_payment(auth)))
    conn = connector(fake)
    results.append(await run(conn, conn.inquire_operation(op("refund", 500, sale))))
    fake.inject("capture", "timeout")
    conn = connector(fake, timeout=SHORT)
    results.append(await run(conn, conn.capture(op("capture", 1000, auth))))
    conn = connector(fake, api_key="c2Vjb25kLWtleS10aGF0LWlzLXdyb25n")
    results.append(await run(conn, conn.capture(op("capture", 1000, auth))))
    fresh = paid(fake)
    conn = connector(fake)
    results.append(await run(conn, conn.void(op("void", 10000, fresh))))

    secrets = [
        API_KEY,
        "c2Vjb25kLWtleS10aGF0LWlzLXdyb25n",
        CARD_TOKEN,
        "4111111111111111",
        *fake.tokens,
    ]
    assert len(fake.tokens) >= 2
    assert "ngenius" in caplog.text  # the connector did log its calls
    for secret in secrets:
        assert secret not in caplog.text
        for result in results:
            assert secret not in json.dumps(
                [result.raw, result.pg_params, result.message, result.gateway_refs]
            )
    assert "Bearer" not in caplog.text and "Basic" not in caplog.text
    assert all("cardToken" not in json.dumps(r.raw) for r in results)
