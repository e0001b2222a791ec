"""The Tabby connector against the fake Tabby over real loopback HTTP."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import httpx
import pytest

from payops.connectors.base import (
    ConnectorConfig,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.registry import connector_class
from payops.connectors.tabby.connector import TabbyConnector
from payops.connectors.tabby.notifications import (
    DEFAULT_HEADER_NAME,
    TabbyWebhookError,
    parse_notification,
    verify_and_parse,
    verify_notification,
)
from payops.connectors.tabby.transformers import (
    PAYMENT_STATUS_OUTCOME,
    amount_minor,
    error_outcome,
    payment_outcome,
)
from payops.ids import new_reference_number
from tests.connectors.tabby import fake_server
from tests.connectors.tabby.fake_server import (
    LIVE_SECRET_KEY,
    MALFORMED_TEXT,
    OTHER_MERCHANT_KEY,
    SERVER_ERROR_TEXT,
    TEST_SECRET_KEY,
    FakeTabby,
    already_closed_response,
    capture_exceeds_response,
    capture_not_authorized_response,
    disputed_response,
    invalid_key_response,
    invalid_payment_id_response,
    missing_bearer_response,
    no_permission_response,
    no_such_payment_response,
    refund_exceeds_response,
    refund_not_closed_response,
    refund_pending_response,
    throttled_response,
)
from tests.helpers import inquire_once, operation_request, run_once

fake_tabby = fake_server.fake_tabby  # the fake's fixture, used by this module

FAULT_TIMEOUT = 0.4


# -- helpers ------------------------------------------------------------------------------------


def connector_for(
    fake: FakeTabby,
    *,
    key: str = TEST_SECRET_KEY,
    sandbox: bool = True,
    timeout: float = 3.0,
    **options: Any,
) -> TabbyConnector:
    return TabbyConnector(
        ConnectorConfig(
            pg_code="tabby-test",
            is_sandbox=sandbox,
            credentials={"secret_key": key},
            timeout_seconds=timeout,
            options={"base_url": fake.url, **options},
        )
    )


def payment_ref(
    payment_id: str | None, amount: int = 100_000, currency: str = "KWD", mode: str = "authorize"
) -> PaymentRef:
    refs = {"payment_id": payment_id} if payment_id is not None else {}
    return PaymentRef(
        reference_number=new_reference_number(),
        amount=amount,
        currency_code=currency,
        operation_mode=mode,
        gateway_refs=refs,
    )


def op(
    operation: str,
    payment_id: str | None,
    amount: int,
    currency: str = "KWD",
    reference: str | None = None,
) -> OperationRequest:
    return operation_request(
        operation,
        amount,
        payment_ref(payment_id, currency=currency),
        reference=reference or new_reference_number(),
    )


run, inquire = run_once, inquire_once


def only_request(fake: FakeTabby) -> Any:
    assert len(fake.requests) == 1, [(r.method, r.path) for r in fake.requests]
    return fake.requests[0]


def assert_authenticated(recorded: Any, key: str = TEST_SECRET_KEY) -> None:
    assert recorded.header("Authorization") == f"Bearer {key}"
    assert recorded.header("Accept") == "application/json"


# -- capabilities and configuration ---------------------------------------------------------------


def test_registry_resolves_the_tabby_connector() -> None:
    cls = connector_class("tabby")
    assert cls is TabbyConnector
    assert cls.capabilities == frozenset({"capture", "refund", "void", "inquiry"})
    assert cls.required_credentials == ("secret_key",)


def test_a_connector_with_no_credentials_can_still_be_built() -> None:
    TabbyConnector(ConnectorConfig(pg_code="x", is_sandbox=True, credentials={}))


@pytest.mark.parametrize(
    ("currency", "options", "credentials", "host"),
    [
        ("KWD", {}, {}, "https://api.tabby.ai"),
        ("AED", {}, {}, "https://api.tabby.ai"),
        ("SAR", {}, {}, "https://api.tabby.sa"),
        ("AED", {"region": "sa"}, {}, "https://api.tabby.sa"),
        ("SAR", {}, {"region": "ai"}, "https://api.tabby.ai"),
        ("KWD", {"base_url": "http://127.0.0.1:9/"}, {}, "http://127.0.0.1:9"),
    ],
)
def test_host_follows_region_then_currency(
    currency: str, options: dict[str, Any], credentials: dict[str, Any], host: str
) -> None:
    # Sandbox and production share Tabby's host: is_sandbox does not change it.
    for sandbox in (True, False):
        connector = TabbyConnector(
            ConnectorConfig(
                pg_code="x",
                is_sandbox=sandbox,
                credentials={"secret_key": TEST_SECRET_KEY, **credentials},
                options=options,
            )
        )
        assert connector._base_url(currency) == host


@pytest.mark.parametrize(
    ("key", "sandbox", "options", "message"),
    [
        ("", True, {}, "The Tabby secret key is not configured"),
        (LIVE_SECRET_KEY, True, {}, "This sandbox configuration holds a live Tabby secret key"),
        (TEST_SECRET_KEY, False, {}, "This live configuration holds a Tabby test secret key"),
        (
            TEST_SECRET_KEY,
            True,
            {"region": "eu", "base_url": ""},
            "The Tabby region must be 'ai' or 'sa'",
        ),
    ],
)
async def test_configuration_problems_refuse_without_calling(
    fake_tabby: FakeTabby, key: str, sandbox: bool, options: dict[str, Any], message: str
) -> None:
    payment_id = fake_tabby.add_payment()
    connector = connector_for(fake_tabby, key=key, sandbox=sandbox, **options)
    result = await run(connector, op("capture", payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == message
    assert fake_tabby.requests == []
    assert TEST_SECRET_KEY not in json.dumps(result.raw)


async def test_an_operation_without_a_tabby_payment_id_is_refused(fake_tabby: FakeTabby) -> None:
    result = await run(connector_for(fake_tabby), op("refund", None, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == "No Tabby payment id is recorded for this payment"
    assert fake_tabby.requests == []


# -- capture ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "authorized", "minor", "wire"),
    [
        ("KWD", "100.000", 40_000, "40.000"),
        ("AED", "250.00", 4_050, "40.50"),
        ("SAR", "10.00", 1, "0.01"),
    ],
)
async def test_partial_capture_succeeds_and_keeps_the_payment_authorized(
    fake_tabby: FakeTabby, currency: str, authorized: str, minor: int, wire: str
) -> None:
    payment_id = fake_tabby.add_payment(authorized, currency)
    request = op("capture", payment_id, minor, currency)
    result = await run(connector_for(fake_tabby), request)

    sent = only_request(fake_tabby)
    assert (sent.method, sent.path) == ("POST", f"/api/v2/payments/{payment_id}/captures")
    assert_authenticated(sent)
    assert sent.header("Content-Type") == "application/json"
    assert sent.json == {"amount": wire, "reference_id": request.reference_number}

    payment = fake_tabby.payment(payment_id)
    assert payment["status"] == "AUTHORIZED"
    [capture] = payment["captures"]
    assert result.outcome == Outcome.SUCCESS
    assert result.raw == payment
    assert result.message == "Approved"
    assert result.pg_params == {
        "payment_id": payment_id,
        "ref": request.reference_number,
        "result": "success",
        "pg_message": "Approved",
        "transaction_id": capture["id"],
    }
    assert result.gateway_refs == {"payment_id": payment_id, "capture_id": capture["id"]}


async def test_capturing_the_rest_closes_the_payment(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment("100.000", "KWD")
    first = await run(connector_for(fake_tabby), op("capture", payment_id, 30_000))
    second = await run(connector_for(fake_tabby), op("capture", payment_id, 70_000))
    assert (first.outcome, second.outcome) == (Outcome.SUCCESS, Outcome.SUCCESS)
    payment = fake_tabby.payment(payment_id)
    assert payment["status"] == "CLOSED"
    assert [c["amount"] for c in payment["captures"]] == ["30.000", "70.000"]


async def test_a_repeated_reference_id_moves_money_once(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment("100.000", "KWD")
    request = op("capture", payment_id, 25_000)
    first = await run(connector_for(fake_tabby), request)
    again = await run(connector_for(fake_tabby), request)
    assert first.outcome == again.outcome == Outcome.SUCCESS
    assert first.gateway_refs == again.gateway_refs
    assert len(fake_tabby.payment(payment_id)["captures"]) == 1
    assert len(fake_tabby.requests_to("/captures")) == 2


async def test_capture_beyond_the_authorization_is_refused(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment("100.000", "KWD", captured="60.000")
    result = await run(connector_for(fake_tabby), op("capture", payment_id, 40_001))
    assert result.outcome == Outcome.FAILED
    assert result.raw == capture_exceeds_response()
    assert result.message == capture_exceeds_response()["error"]
    assert result.pg_params["result"] == "bad_data"
    assert len(fake_tabby.payment(payment_id)["captures"]) == 1


@pytest.mark.parametrize("status", ["CLOSED", "CREATED", "REJECTED", "EXPIRED"])
async def test_capture_of_a_payment_not_authorized_is_refused(
    fake_tabby: FakeTabby, status: str
) -> None:
    payment_id = fake_tabby.add_payment(status=status)
    result = await run(connector_for(fake_tabby), op("capture", payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == capture_not_authorized_response()
    assert result.message == "could not capture not authorized payments"


# -- refund -------------------------------------------------------------------------------------


async def test_refund_of_a_closed_payment_succeeds(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.paid_payment("100.000", "KWD")
    request = op("refund", payment_id, 25_000)
    result = await run(connector_for(fake_tabby), request)

    sent = only_request(fake_tabby)
    assert (sent.method, sent.path) == ("POST", f"/api/v2/payments/{payment_id}/refunds")
    assert_authenticated(sent)
    assert sent.json == {"amount": "25.000", "reference_id": request.reference_number}

    payment = fake_tabby.payment(payment_id)
    [refund] = payment["refunds"]
    assert result.outcome == Outcome.SUCCESS
    assert result.raw == payment
    assert result.pg_params["transaction_id"] == refund["id"]
    assert result.gateway_refs == {"payment_id": payment_id, "refund_id": refund["id"]}
    assert payment["status"] == "CLOSED"


async def test_refund_beyond_the_captured_amount_is_refused(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.paid_payment("100.000", "KWD")
    assert (
        await run(connector_for(fake_tabby), op("refund", payment_id, 80_000))
    ).outcome == Outcome.SUCCESS
    result = await run(connector_for(fake_tabby), op("refund", payment_id, 20_001))
    assert result.outcome == Outcome.FAILED
    assert result.raw == refund_exceeds_response()


async def test_refund_of_a_payment_still_authorized_is_refused(fake_tabby: FakeTabby) -> None:
    # Tabby refunds only CLOSED payments: a partial capture leaves the payment AUTHORIZED.
    payment_id = fake_tabby.add_payment("100.000", "KWD", captured="40.000")
    result = await run(connector_for(fake_tabby), op("refund", payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == refund_not_closed_response()
    assert result.message == "can not refund payment that has no captures and not closed"


async def test_refund_of_a_disputed_payment_is_a_conflict(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.paid_payment()
    fake_tabby.set_disputed(payment_id)
    result = await run(connector_for(fake_tabby), op("refund", payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == disputed_response()
    assert result.pg_params["result"] == "conflict"
    assert result.message == "payment is disputed"


async def test_delayed_refunds_are_queued_until_the_delay_passes(fake_tabby: FakeTabby) -> None:
    fake_tabby.delayed_refunds = True
    payment_id = fake_tabby.paid_payment("100.000", "KWD")
    request = op("refund", payment_id, 30_000)
    result = await run(connector_for(fake_tabby, delayed_refunds=True), request)
    assert result.outcome == Outcome.PENDING
    assert result.pg_params["result"] == "queued"
    assert result.message == "Refund scheduled by Tabby (Delayed Refunds)"

    # Tabby takes no second refund while the first waits.
    second = await run(
        connector_for(fake_tabby, delayed_refunds=True), op("refund", payment_id, 10_000)
    )
    assert second.outcome == Outcome.FAILED
    assert second.raw == refund_pending_response()

    still = await inquire(connector_for(fake_tabby, delayed_refunds=True), request)
    assert still.outcome == Outcome.PENDING
    fake_tabby.backdate_refunds(payment_id, 86_400)
    done = await inquire(connector_for(fake_tabby, delayed_refunds=True), request)
    assert done.outcome == Outcome.SUCCESS


async def test_a_cancelled_delayed_refund_reads_as_not_performed(fake_tabby: FakeTabby) -> None:
    fake_tabby.delayed_refunds = True
    payment_id = fake_tabby.paid_payment()
    request = op("refund", payment_id, 30_000)
    assert (
        await run(connector_for(fake_tabby, delayed_refunds=True), request)
    ).outcome == Outcome.PENDING
    fake_tabby.cancel_refund(payment_id, request.reference_number)
    result = await inquire(connector_for(fake_tabby, delayed_refunds=True), request)
    assert result.outcome == Outcome.FAILED


# -- void (close) -------------------------------------------------------------------------------


async def test_void_reads_the_payment_then_closes_it(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment("100.000", "KWD")
    request = op("void", payment_id, 100_000)
    result = await run(connector_for(fake_tabby), request)

    assert [(r.method, r.path) for r in fake_tabby.requests] == [
        ("GET", f"/api/v2/payments/{payment_id}"),
        ("POST", f"/api/v2/payments/{payment_id}/close"),
    ]
    close = fake_tabby.requests[1]
    assert_authenticated(close)
    assert close.body == b""
    assert close.header("Content-Type") is None

    payment = fake_tabby.payment(payment_id)
    assert payment["status"] == "CLOSED" and payment["captures"] == []
    assert result.outcome == Outcome.SUCCESS
    assert result.raw == payment
    assert result.gateway_refs == {"payment_id": payment_id}
    assert result.pg_params == {
        "payment_id": payment_id,
        "ref": request.reference_number,
        "result": "success",
        "pg_message": "Approved",
    }


@pytest.mark.parametrize("captured", ["40.000", "100.000"], ids=["partial", "full"])
async def test_void_after_a_capture_is_refused_without_closing(
    fake_tabby: FakeTabby, captured: str
) -> None:
    payment_id = fake_tabby.add_payment("100.000", "KWD", captured=captured)
    before = fake_tabby.payment(payment_id)["status"]
    result = await run(connector_for(fake_tabby), op("void", payment_id, 100_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == "The Tabby payment has captures; it can no longer be voided"
    assert fake_tabby.requests_to("/close") == []
    assert fake_tabby.payment(payment_id)["status"] == before


async def test_void_of_a_payment_already_closed_without_capture_succeeds(
    fake_tabby: FakeTabby,
) -> None:
    payment_id = fake_tabby.add_payment(status="CLOSED")
    result = await run(connector_for(fake_tabby), op("void", payment_id, 100_000))
    assert result.outcome == Outcome.SUCCESS
    assert result.message == "Already closed at Tabby"
    assert fake_tabby.requests_to("/close") == []


@pytest.mark.parametrize("status", ["CREATED", "REJECTED", "EXPIRED"])
async def test_void_of_a_payment_never_authorized_is_refused(
    fake_tabby: FakeTabby, status: str
) -> None:
    payment_id = fake_tabby.add_payment(status=status)
    result = await run(connector_for(fake_tabby), op("void", payment_id, 100_000))
    assert result.outcome == Outcome.FAILED
    assert fake_tabby.requests_to("/close") == []


async def test_close_answered_already_closed_is_judged_by_the_payment(
    fake_tabby: FakeTabby,
) -> None:
    # Someone closes it between our read and our close: Tabby answers 400 "already closed".
    payment_id = fake_tabby.add_payment()
    fake_tabby.fail_next("decline", suffix="/close", apply=True, message="already closed")
    result = await run(connector_for(fake_tabby), op("void", payment_id, 100_000))
    assert result.outcome == Outcome.SUCCESS
    assert [r.method for r in fake_tabby.requests] == ["GET", "POST", "GET"]


async def test_a_refused_close_fails(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    fake_tabby.fail_next("decline", suffix="/close", message="close is not allowed")
    result = await run(connector_for(fake_tabby), op("void", payment_id, 100_000))
    assert result.outcome == Outcome.FAILED
    assert result.message == "close is not allowed"
    assert fake_tabby.payment(payment_id)["status"] == "AUTHORIZED"


# -- documented refusals ---------------------------------------------------------------------------


@pytest.mark.parametrize("operation", ["capture", "refund", "void"])
async def test_wrong_credentials_are_refused(fake_tabby: FakeTabby, operation: str) -> None:
    payment_id = fake_tabby.paid_payment() if operation == "refund" else fake_tabby.add_payment()
    wrong = "sk_test_00000000-dead-beef-0000-000000000000"
    result = await run(connector_for(fake_tabby, key=wrong), op(operation, payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == invalid_key_response()
    assert result.message == "invalid secret key"
    assert result.pg_params["result"] == "not_authorized"
    assert wrong not in json.dumps([result.raw, result.pg_params, result.message])


async def test_a_payment_of_another_merchant_is_forbidden(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment(secret_key=OTHER_MERCHANT_KEY)
    result = await run(connector_for(fake_tabby), op("capture", payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == no_permission_response()


async def test_an_unknown_payment_is_not_found(fake_tabby: FakeTabby) -> None:
    result = await run(
        connector_for(fake_tabby), op("capture", "0f0f0f0f-0000-4000-8000-000000000000", 10_000)
    )
    assert result.outcome == Outcome.FAILED
    assert result.raw == no_such_payment_response()
    assert result.message == "no such payment"


async def test_a_malformed_payment_id_is_bad_data(fake_tabby: FakeTabby) -> None:
    result = await run(connector_for(fake_tabby), op("capture", "ORD-42", 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == invalid_payment_id_response()


async def test_the_payment_id_cannot_escape_its_path(fake_tabby: FakeTabby) -> None:
    await run(connector_for(fake_tabby), op("capture", "../../v1/webhooks", 10_000))
    assert only_request(fake_tabby).path == "/api/v2/payments/..%2F..%2Fv1%2Fwebhooks/captures"


async def test_throttling_is_a_refusal(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    fake_tabby.fail_next("throttle")
    result = await run(connector_for(fake_tabby), op("capture", payment_id, 10_000))
    assert result.outcome == Outcome.FAILED
    assert result.raw == throttled_response()
    assert fake_tabby.payment(payment_id)["captures"] == []


async def test_the_fake_enforces_the_wire_format(fake_tabby: FakeTabby) -> None:
    """What the connector never sends, refused as Tabby does (and parsed by the connector)."""
    payment_id = fake_tabby.add_payment("100.000", "KWD")
    url = f"{fake_tabby.url}/api/v2/payments/{payment_id}/captures"
    auth = {"Authorization": f"Bearer {TEST_SECRET_KEY}"}
    async with httpx.AsyncClient() as http:
        no_auth = await http.post(url, json={"amount": "1.000", "reference_id": "a"})
        basic = await http.post(
            url,
            json={"amount": "1.000", "reference_id": "a"},
            headers={"Authorization": f"Basic {TEST_SECRET_KEY}"},
        )
        number = await http.post(url, json={"amount": 1, "reference_id": "a"}, headers=auth)
        too_fine = await http.post(
            url, json={"amount": "1.0001", "reference_id": "a"}, headers=auth
        )
        negative = await http.post(
            url, json={"amount": "-1.000", "reference_id": "a"}, headers=auth
        )
        no_reference = await http.post(url, json={"amount": "1.000"}, headers=auth)
        not_json = await http.post(url, content=b"amount=1", headers=auth)
        unknown = await http.get(f"{fake_tabby.url}/api/v3/whatever", headers=auth)
    assert (no_auth.status_code, no_auth.json()) == (401, missing_bearer_response())
    assert (basic.status_code, basic.json()) == (401, missing_bearer_response())
    assert number.status_code == 400 and number.json()["errors"] == ["amount must be a string"]
    assert too_fine.status_code == 400
    assert too_fine.json()["errors"] == ["amount allows up to 3 decimals for KWD"]
    assert negative.status_code == 400
    assert no_reference.json()["errors"] == ["reference_id is required"]
    assert not_json.status_code == 400 and not_json.json()["errorType"] == "bad_data"
    assert (unknown.status_code, unknown.text) == (404, "404 page not found")
    assert fake_tabby.payment(payment_id)["captures"] == []


async def test_the_fake_enforces_close_and_refund_rules(fake_tabby: FakeTabby) -> None:
    authorized = fake_tabby.add_payment("100.000", "KWD", captured="40.000")
    url = f"{fake_tabby.url}/api/v2/payments/{authorized}"
    auth = {"Authorization": f"Bearer {TEST_SECRET_KEY}"}
    async with httpx.AsyncClient() as http:
        early_refund = await http.post(
            f"{url}/refunds", headers=auth, json={"amount": "1.000", "reference_id": "r1"}
        )
        close = await http.post(f"{url}/close", headers=auth)  # releases the other 60.000
        again = await http.post(f"{url}/close", headers=auth)
        capture = await http.post(
            f"{url}/captures", headers=auth, json={"amount": "1.000", "reference_id": "c1"}
        )
        over = await http.post(
            f"{url}/refunds", headers=auth, json={"amount": "40.001", "reference_id": "r2"}
        )
        full = await http.post(
            f"{url}/refunds", headers=auth, json={"amount": "40.000", "reference_id": "r3"}
        )
        replay = await http.post(
            f"{url}/refunds", headers=auth, json={"amount": "40.000", "reference_id": "r3"}
        )
    assert (early_refund.status_code, early_refund.json()) == (400, refund_not_closed_response())
    assert close.status_code == 200 and close.json()["status"] == "CLOSED"
    assert (again.status_code, again.json()) == (400, already_closed_response())
    assert (capture.status_code, capture.json()) == (400, capture_not_authorized_response())
    assert (over.status_code, over.json()) == (400, refund_exceeds_response())
    assert full.status_code == replay.status_code == 200
    assert [r["amount"] for r in fake_tabby.payment(authorized)["refunds"]] == ["40.000"]


async def test_an_errors_array_becomes_the_message(fake_tabby: FakeTabby) -> None:
    # 2 decimals for AED: a KWD-formatted amount on an AED payment is refused with errors[].
    payment_id = fake_tabby.add_payment("100.00", "AED")
    result = await run(connector_for(fake_tabby), op("capture", payment_id, 1_000, "KWD"))
    assert only_request(fake_tabby).json["amount"] == "1.000"
    assert result.outcome == Outcome.FAILED
    assert result.message == "amount allows up to 2 decimals for AED"


# -- faults: the outcome is unknown -------------------------------------------------------------

FAULT_CASES = [
    ("capture", "/captures"),
    ("refund", "/refunds"),
    ("void", "/close"),
    ("void", ""),
]


@pytest.mark.parametrize("fault", ["timeout", "reset", "500", "malformed"])
@pytest.mark.parametrize(
    ("operation", "suffix"), FAULT_CASES, ids=["capture", "refund", "void-close", "void-read"]
)
async def test_faults_leave_the_outcome_unknown(
    fake_tabby: FakeTabby, fault: str, operation: str, suffix: str
) -> None:
    fake_tabby.hang_seconds = 1.5
    payment_id = fake_tabby.paid_payment() if operation == "refund" else fake_tabby.add_payment()
    fake_tabby.fail_next(fault, suffix=suffix, apply=True)
    result = await run(
        connector_for(fake_tabby, timeout=FAULT_TIMEOUT),
        op(operation, payment_id, 10_000 if operation != "void" else 100_000),
    )
    assert result.outcome == Outcome.UNKNOWN
    expected_raw = {
        "timeout": {"error": "timeout"},
        "reset": {"error": "connection_error"},
        "500": {"status_code": 500, "body": SERVER_ERROR_TEXT},
        "malformed": {"status_code": 200, "body": MALFORMED_TEXT},
    }[fault]
    assert result.raw == expected_raw


async def test_an_unreachable_gateway_is_unknown(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    connector = TabbyConnector(
        ConnectorConfig(
            pg_code="x",
            is_sandbox=True,
            credentials={"secret_key": TEST_SECRET_KEY},
            timeout_seconds=FAULT_TIMEOUT,
            options={"base_url": "http://127.0.0.1:9"},
        )
    )
    result = await run(connector, op("capture", payment_id, 10_000))
    assert result.outcome == Outcome.UNKNOWN


async def test_a_reply_without_the_capture_is_unknown(fake_tabby: FakeTabby) -> None:
    # A 200 payment that does not list our reference proves nothing.
    payment_id = fake_tabby.add_payment(status="CLOSED")
    connector = connector_for(fake_tabby)

    async def send(*args: Any, **kwargs: Any) -> Any:
        from payops.connectors.kit import Reply

        return Reply(200, fake_tabby.payment(payment_id))

    connector._send = send  # type: ignore[method-assign]
    result = await run(connector, op("capture", payment_id, 10_000))
    assert result.outcome == Outcome.UNKNOWN


# -- inquire_operation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("operation", "suffix"), [("capture", "/captures"), ("refund", "/refunds"), ("void", "/close")]
)
async def test_inquiry_finds_an_operation_whose_reply_was_lost(
    fake_tabby: FakeTabby, operation: str, suffix: str
) -> None:
    fake_tabby.hang_seconds = 1.0
    payment_id = fake_tabby.paid_payment() if operation == "refund" else fake_tabby.add_payment()
    request = op(operation, payment_id, 10_000 if operation != "void" else 100_000)
    fake_tabby.fail_next("timeout", suffix=suffix, apply=True)
    lost = await run(connector_for(fake_tabby, timeout=FAULT_TIMEOUT), request)
    assert lost.outcome == Outcome.UNKNOWN

    fake_tabby.requests.clear()
    result = await inquire(connector_for(fake_tabby), request)
    sent = only_request(fake_tabby)
    assert (sent.method, sent.path) == ("GET", f"/api/v2/payments/{payment_id}")
    assert_authenticated(sent)
    assert sent.body == b""
    assert result.outcome == Outcome.SUCCESS
    assert result.raw == fake_tabby.payment(payment_id)


@pytest.mark.parametrize(
    ("operation", "suffix"), [("capture", "/captures"), ("refund", "/refunds"), ("void", "/close")]
)
async def test_inquiry_reports_an_operation_never_performed(
    fake_tabby: FakeTabby, operation: str, suffix: str
) -> None:
    fake_tabby.hang_seconds = 1.0
    payment_id = fake_tabby.paid_payment() if operation == "refund" else fake_tabby.add_payment()
    request = op(operation, payment_id, 10_000 if operation != "void" else 100_000)
    fake_tabby.fail_next("timeout", suffix=suffix)
    assert (
        await run(connector_for(fake_tabby, timeout=FAULT_TIMEOUT), request)
    ).outcome == Outcome.UNKNOWN
    result = await inquire(connector_for(fake_tabby), request)
    assert result.outcome == Outcome.FAILED


async def test_inquiry_of_a_capture_with_another_amount_is_unknown(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    request = op("capture", payment_id, 10_000)
    await run(connector_for(fake_tabby), request)
    changed = OperationRequest(
        operation="capture",
        reference_number=request.reference_number,
        amount=20_000,
        currency_code="KWD",
        payment=request.payment,
    )
    result = await inquire(connector_for(fake_tabby), changed)
    assert result.outcome == Outcome.UNKNOWN
    assert result.message == "Tabby recorded a different amount (10.000) for this capture"


async def test_inquiry_of_a_void_on_an_unknown_status_is_pending(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    fake_tabby.set_status(payment_id, "ON_HOLD")
    result = await inquire(connector_for(fake_tabby), op("void", payment_id, 100_000))
    assert result.outcome == Outcome.PENDING


@pytest.mark.parametrize("fault", ["timeout", "reset", "500", "malformed", "throttle"])
async def test_inquiry_faults_are_unknown(fake_tabby: FakeTabby, fault: str) -> None:
    fake_tabby.hang_seconds = 1.0
    payment_id = fake_tabby.add_payment()
    fake_tabby.fail_next(fault, method="GET")
    result = await inquire(
        connector_for(fake_tabby, timeout=FAULT_TIMEOUT), op("capture", payment_id, 10_000)
    )
    assert result.outcome == Outcome.UNKNOWN


async def test_inquiry_with_refused_credentials_is_unknown(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    result = await inquire(
        connector_for(fake_tabby, key="sk_test_rotated"), op("capture", payment_id, 10_000)
    )
    assert result.outcome == Outcome.UNKNOWN
    assert result.raw == invalid_key_response()


async def test_inquiry_of_an_unknown_payment_is_failed(fake_tabby: FakeTabby) -> None:
    result = await inquire(
        connector_for(fake_tabby), op("refund", "0f0f0f0f-0000-4000-8000-000000000000", 10_000)
    )
    assert result.outcome == Outcome.FAILED


# -- inquire_payment ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "captured", "outcome"),
    [
        ("AUTHORIZED", None, Outcome.SUCCESS),
        ("AUTHORIZED", "100.000", Outcome.SUCCESS),  # becomes CLOSED with a capture
        ("CLOSED", None, Outcome.FAILED),  # closed without capture: cancelled
        ("CREATED", None, Outcome.PENDING),
        ("REJECTED", None, Outcome.FAILED),
        ("EXPIRED", None, Outcome.FAILED),
        ("SOMETHING_NEW", None, Outcome.PENDING),
    ],
)
async def test_inquire_payment_maps_tabby_statuses(
    fake_tabby: FakeTabby, status: str, captured: str | None, outcome: Outcome
) -> None:
    payment_id = fake_tabby.add_payment(status=status, captured=captured)
    connector = connector_for(fake_tabby)
    payment = payment_ref(payment_id)
    try:
        result = await connector.inquire_payment(payment)
    finally:
        await connector.aclose()
    sent = only_request(fake_tabby)
    assert (sent.method, sent.path) == ("GET", f"/api/v2/payments/{payment_id}")
    assert_authenticated(sent)
    assert result.outcome == outcome
    assert result.raw == fake_tabby.payment(payment_id)
    assert result.gateway_refs == {"payment_id": payment_id}
    assert result.pg_params["payment_id"] == payment_id
    assert result.pg_params["result"] == fake_tabby.payment(payment_id)["status"].lower()


async def test_inquire_payment_faults_and_missing_ids(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment()
    fake_tabby.fail_next("500")
    connector = connector_for(fake_tabby)
    try:
        assert (await connector.inquire_payment(payment_ref(payment_id))).outcome == Outcome.UNKNOWN
        assert (await connector.inquire_payment(payment_ref(None))).outcome == Outcome.UNKNOWN
        missing = await connector.inquire_payment(
            payment_ref("0f0f0f0f-0000-4000-8000-000000000000")
        )
        assert missing.outcome == Outcome.FAILED
    finally:
        await connector.aclose()


# -- status and error maps ----------------------------------------------------------------------


def test_every_documented_status_is_mapped_and_nothing_defaults_to_success() -> None:
    assert set(PAYMENT_STATUS_OUTCOME) == {"CREATED", "AUTHORIZED", "CLOSED", "REJECTED", "EXPIRED"}
    for status in ("authorized", "closed", "rejected", "expired"):  # webhooks: lower case
        assert payment_outcome(status) == PAYMENT_STATUS_OUTCOME[status.upper()]
    for unknown in ("", None, "CAPTURED", "REFUNDED", "ON_HOLD", "new"):
        assert payment_outcome(unknown) == Outcome.PENDING
    assert error_outcome(400) == error_outcome(409) == error_outcome(429) == Outcome.FAILED
    for status in (408, 418, 500, 502, 503, 504, 302):
        assert error_outcome(status) == Outcome.UNKNOWN


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("100", "AED", 10_000),
        ("100.5", "AED", 10_050),
        ("0.001", "KWD", 1),
        ("1.005", "AED", None),
        ("NaN", "AED", None),
        ("Infinity", "KWD", None),
        ("abc", "KWD", None),
        (None, "KWD", None),
    ],
)
def test_tabby_amounts_are_read_exactly(
    value: str | None, currency: str, minor: int | None
) -> None:
    assert amount_minor(value, currency) == minor


# -- webhooks -----------------------------------------------------------------------------------

WEBHOOK_SECRET = "whsec-6c1b0a2e9f"


def webhook_body(payment: dict[str, Any], status: str) -> bytes:
    return json.dumps({**payment, "status": status}).encode()


def test_a_webhook_with_the_registered_header_is_accepted(fake_tabby: FakeTabby) -> None:
    payment_id = fake_tabby.add_payment(captured="40.000")
    body = webhook_body(fake_tabby.payment(payment_id), "authorized")
    headers = {DEFAULT_HEADER_NAME.lower(): WEBHOOK_SECRET, "content-type": "application/json"}
    assert verify_and_parse(headers, body, WEBHOOK_SECRET) == (payment_id, "AUTHORIZED")
    note = parse_notification(body)
    assert note.outcome == Outcome.SUCCESS
    assert note.order_reference_id == "ORD-1"
    assert note.dedupe_key == (payment_id, "AUTHORIZED", 1, 0)
    # any header title the merchant registered, as a list of pairs too
    assert verify_and_parse(
        [(b"X-Shop-Token", WEBHOOK_SECRET.encode())],
        body,
        WEBHOOK_SECRET,
        header_name="x-shop-token",
    ) == (payment_id, "AUTHORIZED")


@pytest.mark.parametrize(
    "headers",
    [
        {DEFAULT_HEADER_NAME: WEBHOOK_SECRET + "x"},  # tampered value
        {DEFAULT_HEADER_NAME: "whsec-other"},  # another secret
        {"Authorization": f"Bearer {WEBHOOK_SECRET}"},  # not the registered header
        {},
    ],
    ids=["tampered", "wrong-secret", "other-header", "missing"],
)
def test_an_unauthentic_webhook_is_refused(fake_tabby: FakeTabby, headers: dict[str, str]) -> None:
    body = webhook_body(fake_tabby.payment(fake_tabby.add_payment()), "authorized")
    assert not verify_notification(headers, WEBHOOK_SECRET)
    with pytest.raises(TabbyWebhookError, match="not authentic"):
        verify_and_parse(headers, body, WEBHOOK_SECRET)


def test_a_webhook_is_refused_when_no_secret_is_configured_or_the_header_repeats() -> None:
    assert not verify_notification({DEFAULT_HEADER_NAME: ""}, "")
    doubled = [(DEFAULT_HEADER_NAME, WEBHOOK_SECRET), (DEFAULT_HEADER_NAME, WEBHOOK_SECRET)]
    assert not verify_notification(doubled, WEBHOOK_SECRET)


def test_a_tampered_body_is_caught_by_parsing_only_when_malformed() -> None:
    # Tabby signs nothing: the header proves the sender, and the body must still parse.
    headers = {DEFAULT_HEADER_NAME: WEBHOOK_SECRET}
    for body in (
        b"{",
        b"[]",
        b'{"status": "closed"}',
        b'{"id": "x"}',
        b'{"id": "x", "status": "closed", "captures": {}}',
        b"\xff",
    ):
        with pytest.raises(TabbyWebhookError):
            verify_and_parse(headers, body, WEBHOOK_SECRET)


@pytest.mark.parametrize(
    ("status", "captures", "outcome"),
    [
        ("authorized", 0, Outcome.SUCCESS),
        ("closed", 1, Outcome.SUCCESS),
        ("closed", 0, Outcome.FAILED),
        ("rejected", 0, Outcome.FAILED),
        ("expired", 0, Outcome.FAILED),
        ("mystery", 0, Outcome.PENDING),
    ],
)
def test_webhook_statuses(status: str, captures: int, outcome: Outcome) -> None:
    body = json.dumps(
        {"id": "p-1", "status": status, "captures": [{"amount": "1.00"}] * captures, "refunds": []}
    )
    note = parse_notification(body)
    assert (note.status, note.outcome) == (status.upper(), outcome)


# -- secrets never leak -------------------------------------------------------------------------

PAN = re.compile(r"\d{13,19}")


async def test_credentials_never_reach_logs_or_results(
    fake_tabby: FakeTabby, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("", "httpx", "httpcore", "payops"):
        caplog.set_level(logging.DEBUG, logger=name or None)
    fake_tabby.hang_seconds = 1.0
    authorized = fake_tabby.add_payment()
    paid = fake_tabby.paid_payment()
    voidable = fake_tabby.add_payment()
    results = [
        await run(connector_for(fake_tabby), op("capture", authorized, 10_000)),
        await run(connector_for(fake_tabby), op("refund", paid, 10_000)),
        await run(connector_for(fake_tabby), op("void", voidable, 100_000)),
        await run(connector_for(fake_tabby), op("capture", paid, 10_000)),  # refused
        await inquire(connector_for(fake_tabby), op("refund", paid, 10_000)),
    ]
    fake_tabby.fail_next("timeout")
    results.append(
        await run(
            connector_for(fake_tabby, timeout=FAULT_TIMEOUT), op("capture", authorized, 10_000)
        )
    )
    fake_tabby.fail_next("500")
    results.append(await run(connector_for(fake_tabby), op("capture", authorized, 10_000)))
    wrong = "sk_test_99999999-wrong-key"
    results.append(
        await run(connector_for(fake_tabby, key=wrong), op("capture", authorized, 10_000))
    )
    results.append(
        await run(connector_for(fake_tabby, key=LIVE_SECRET_KEY), op("capture", authorized, 10_000))
    )

    assert any(record.name.startswith("httpx") for record in caplog.records)
    logged = caplog.text + "".join(repr(record.args) for record in caplog.records)
    dumped = json.dumps([[r.raw, r.pg_params, r.message, r.gateway_refs] for r in results])
    for secret in (TEST_SECRET_KEY, wrong, LIVE_SECRET_KEY, "Bearer "):
        assert secret not in logged
        assert secret not in dumped
    assert not PAN.search(logged)
    assert not PAN.search(dumped)
