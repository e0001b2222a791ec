"""Tabby's payment side (checkout session, hosted page, return) against the fake Tabby, at the
connector level: the exact create request, the customer's choices on the hosted page through
the journey driver, and what ``confirm_return`` / ``inquire_payment`` make of them."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest

from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    ConnectorConfig,
    Outcome,
    PaymentRef,
)
from payops.connectors.registry import connector_class
from payops.connectors.tabby.connector import TabbyConnector
from tests.checkout.journeys import BrowserStep, driver
from tests.connectors.tabby import fake_server
from tests.connectors.tabby.fake_server import TEST_SECRET_KEY, FakeTabby
from tests.fakes.receiver import receiver
from tests.helpers import (
    begun,
    checkout_request,
    driver_notification,
    forged_return,
    new_attempt,
    returned_params,
    started,
)

fake_tabby = fake_server.fake_tabby

DRIVER = driver("tabby")
RETURN = "http://payops.test/checkout/return/tok-7f3a9c"
AMOUNT = 12_500  # 12.500 KWD


def connector_for(fake: FakeTabby, **options: Any) -> TabbyConnector:
    return TabbyConnector(
        ConnectorConfig(
            pg_code="tabby-kwd",
            is_sandbox=True,
            credentials={"secret_key": TEST_SECRET_KEY},
            timeout_seconds=3.0,
            options={"base_url": fake.url, "merchant_code": "KW", **options},
        )
    )


def attempt(mode: str = "purchase", amount: int = AMOUNT, currency: str = "KWD") -> PaymentRef:
    return new_attempt(amount, currency, mode)


def checkout(payment: PaymentRef, **changes: Any) -> CheckoutRequest:
    customer = changes.pop(
        "customer",
        {
            "email": "otp.success@tabby.ai",
            "first_name": "Test",
            "last_name": "Buyer",
            "phone": "+96550000001",
        },
    )
    return checkout_request(payment, RETURN, "tabby-kwd", "tok-7f3a9c", customer, **changes)


def return_params(step: BrowserStep) -> dict[str, str]:
    return returned_params(step, RETURN)


async def begin(
    connector: TabbyConnector, payment: PaymentRef, **changes: Any
) -> tuple[PaymentRef, CheckoutStart]:
    return await begun(connector, checkout(payment, **changes))


@pytest.fixture
async def tabby(fake_tabby: FakeTabby) -> Any:
    connector = connector_for(fake_tabby)
    yield connector
    await connector.aclose()


def test_tabby_takes_payments_with_ottus_inquiry_window() -> None:
    cls = connector_class("tabby")
    assert cls.takes_payments is True
    assert cls.attempt_inquiry_minutes == 16
    assert cls.payment_modes == frozenset({"purchase", "authorize"})


async def test_create_request_is_tabbys_checkout_session(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment = attempt()
    start = await tabby.start_checkout(checkout(payment))
    [sent] = fake_tabby.requests
    assert (sent.method, sent.path) == ("POST", "/api/v2/checkout")
    assert sent.header("Authorization") == f"Bearer {TEST_SECRET_KEY}"
    assert sent.header("Content-Type") == "application/json"
    body = sent.json
    assert body["lang"] == "en" and body["merchant_code"] == "KW"
    assert body["merchant_urls"] == {
        "success": RETURN,
        "cancel": f"{RETURN}?outcome=cancel",
        "failure": f"{RETURN}?outcome=failure",
    }
    sent_payment = body["payment"]
    assert sent_payment["amount"] == "12.500" and sent_payment["currency"] == "KWD"
    assert sent_payment["order"]["reference_id"] == payment.reference_number
    assert sent_payment["order"]["items"][0]["unit_price"] == "12.500"
    assert sent_payment["order"]["tax_amount"] == "0.000"
    assert sent_payment["meta"] == {"order_id": payment.reference_number}
    assert sent_payment["buyer"] == {
        "name": "Test Buyer",
        "email": "otp.success@tabby.ai",
        "phone": "+96550000001",
    }
    for required in ("buyer_history", "order_history", "shipping_address", "description"):
        assert required in sent_payment
    [session] = fake_tabby.sessions.values()
    assert start.outcome == Outcome.SUCCESS and start.method == "GET"
    assert start.url == f"{fake_tabby.url}/hpp?sessionId={session['id']}"
    assert start.gateway_refs == {
        "payment_id": session["payment_id"],
        "session_id": session["id"],
        "web_url": start.url,
    }
    assert fake_tabby.payment(session["payment_id"])["status"] == "CREATED"


@pytest.mark.parametrize("mode", ["purchase", "authorize"])
async def test_approved_payment(fake_tabby: FakeTabby, tabby: TabbyConnector, mode: str) -> None:
    payment, start = await begin(tabby, attempt(mode))
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
    assert step is not None
    params = return_params(step)
    assert params["payment_id"] == start.gateway_refs["payment_id"]
    result = await tabby.confirm_return(payment, params)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert (result.amount, result.currency_code) == (AMOUNT, "KWD")
    assert result.payment_state is None and result.review_reason == ""
    assert result.gateway_refs["payment_id"] == params["payment_id"]
    at_tabby = fake_tabby.payment(params["payment_id"])
    captures = fake_tabby.requests_to("/captures")
    if mode == "purchase":
        # Tabby only authorizes at checkout: a purchase is captured in full, under the
        # attempt's reference, before it is reported.
        assert at_tabby["status"] == "CLOSED"
        assert [(c["amount"], c["reference_id"]) for c in at_tabby["captures"]] == [
            ("12.500", payment.reference_number)
        ]
        assert len(captures) == 1 and captures[0].json == {
            "amount": "12.500",
            "reference_id": payment.reference_number,
        }
        assert result.gateway_refs["capture_id"] == at_tabby["captures"][0]["id"]
    else:
        assert at_tabby["status"] == "AUTHORIZED" and captures == []
    # A second return is idempotent: nothing is captured again.
    again = await tabby.confirm_return(payment, params)
    assert again.outcome == Outcome.SUCCESS
    assert len(fake_tabby.requests_to("/captures")) == len(captures)


@pytest.mark.parametrize(("action", "state"), [("decline", None), ("cancel", "canceled")])
async def test_declined_and_cancelled(
    fake_tabby: FakeTabby, tabby: TabbyConnector, action: str, state: str | None
) -> None:
    payment, start = await begin(tabby, attempt())
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), action)  # type: ignore[arg-type]
    assert step is not None
    params = return_params(step)
    assert params["outcome"] == ("failure" if action == "decline" else "cancel")
    result = await tabby.confirm_return(payment, params)
    assert result.outcome == Outcome.FAILED
    assert result.payment_state == state
    assert fake_tabby.requests_to("/captures") == []


async def test_pending_payment_stays_pending(fake_tabby: FakeTabby, tabby: TabbyConnector) -> None:
    payment, start = await begin(tabby, attempt())
    assert DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "pending") is None
    # The browser comes back without a decision (e.g. the customer closed the page and used
    # the back button): Tabby still says CREATED.
    result = await tabby.confirm_return(payment, {})
    assert result.outcome == Outcome.PENDING
    assert (await tabby.inquire_payment(payment)).outcome == Outcome.PENDING


async def test_forged_return_is_neither_success_nor_failure(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    # Only the stored payment is read, never the forged id.
    started_attempt = await begin(tabby, attempt())
    result = await forged_return(tabby, DRIVER, fake_tabby, started_attempt, RETURN, "payment_id")
    assert result.outcome == Outcome.PENDING

    # Someone else's paid payment named in the return of an attempt with no stored id.
    other, other_start = await begin(tabby, attempt("authorize"))
    DRIVER.pay(fake_tabby, BrowserStep("GET", other_start.url), "success")
    victim = replace(attempt(), gateway_refs={})
    stolen = await tabby.confirm_return(
        victim, {"payment_id": other_start.gateway_refs["payment_id"]}
    )
    assert stolen.outcome == Outcome.PENDING and stolen.gateway_refs == {}
    assert stolen.amount is None


async def test_failure_url_with_an_authorized_payment_is_settled_by_the_api(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment, start = await begin(tabby, attempt("authorize"))
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
    assert step is not None
    contradicting = {**return_params(step), "outcome": "failure"}
    assert (await tabby.confirm_return(payment, contradicting)).outcome == Outcome.SUCCESS


async def test_lost_create_reply_then_retry_creates_no_second_payable_payment(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment = attempt()
    fake_tabby.fail_next("reset", method="POST", path="/api/v2/checkout", apply=True)
    lost = await tabby.start_checkout(checkout(payment))
    assert lost.outcome == Outcome.UNKNOWN
    [orphan] = fake_tabby.payments_for(payment.reference_number)
    # The orphan's page reached nobody; Tabby shows it authorized (say the first reply was in
    # fact delivered to someone): the retry adopts it instead of creating another session.
    fake_tabby.set_status(orphan["id"], "AUTHORIZED")
    retry = await tabby.start_checkout(checkout(payment, retry=True))
    assert retry.outcome == Outcome.SUCCESS
    # Only the lost create was ever sent.
    assert len([r for r in fake_tabby.requests if r.path == "/api/v2/checkout"]) == 1
    assert [p["id"] for p in fake_tabby.payments_for(payment.reference_number)] == [orphan["id"]]
    assert retry.gateway_refs == {"payment_id": orphan["id"]}
    assert retry.url == f"{RETURN}?payment_id={orphan['id']}"
    result = await tabby.confirm_return(
        started(payment, retry), return_params(BrowserStep("GET", retry.url))
    )
    assert result.outcome == Outcome.SUCCESS  # captured once, as a purchase
    assert len(fake_tabby.payment(orphan["id"])["captures"]) == 1


async def test_lost_create_reply_with_an_unpaid_orphan_creates_one_new_session(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment = attempt()
    fake_tabby.fail_next("reset", method="POST", path="/api/v2/checkout", apply=True)
    assert (await tabby.start_checkout(checkout(payment))).outcome == Outcome.UNKNOWN
    retry = await tabby.start_checkout(checkout(payment, retry=True))
    assert retry.outcome == Outcome.SUCCESS and retry.url.startswith(f"{fake_tabby.url}/hpp")
    lookups = [r for r in fake_tabby.requests if r.path == "/api/v2/payments"]
    assert lookups and "created_at__gte=" in lookups[0].query
    payments = fake_tabby.payments_for(payment.reference_number)
    assert len(payments) == 2  # the orphan's page reached nobody: only the new one is payable
    paid = started(payment, retry)
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", retry.url), "success")
    assert step is not None
    assert (await tabby.confirm_return(paid, return_params(step))).outcome == Outcome.SUCCESS
    statuses = sorted(p["status"] for p in fake_tabby.payments_for(payment.reference_number))
    assert statuses == ["CLOSED", "CREATED"]


async def test_a_second_start_of_the_same_attempt_reuses_its_page(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment, first = await begin(tabby, attempt())
    second = await tabby.start_checkout(checkout(payment))
    assert second.outcome == Outcome.SUCCESS and second.url == first.url
    assert len([r for r in fake_tabby.requests if r.path == "/api/v2/checkout"]) == 1


async def test_expiry(fake_tabby: FakeTabby, tabby: TabbyConnector) -> None:
    fake_tabby.expiry_seconds = 0.2
    payment, start = await begin(tabby, attempt())
    await asyncio.sleep(0.3)
    result = await tabby.inquire_payment(payment)
    assert result.outcome == Outcome.FAILED and result.payment_state == "expired"
    assert httpx.get(start.url).status_code == 410  # the page is closed too


async def test_never_returned_purchase_is_captured_by_the_inquiry(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment, start = await begin(tabby, attempt())
    DRIVER.pay_without_return(fake_tabby, BrowserStep("GET", start.url))
    result = await tabby.inquire_payment(payment)
    assert result.outcome == Outcome.SUCCESS and result.amount == AMOUNT
    assert fake_tabby.payment(start.gateway_refs["payment_id"])["status"] == "CLOSED"


async def test_lost_capture_reply_is_read_back_never_captured_twice(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment, start = await begin(tabby, attempt())
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
    assert step is not None
    fake_tabby.fail_next("reset", method="POST", suffix="/captures", apply=True)
    result = await tabby.confirm_return(payment, return_params(step))
    assert result.outcome == Outcome.SUCCESS
    assert len(fake_tabby.payment(start.gateway_refs["payment_id"])["captures"]) == 1
    assert len(fake_tabby.requests_to("/captures")) == 1


async def test_unconfirmed_capture_stays_pending_and_is_retried_with_the_same_reference(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment, start = await begin(tabby, attempt())
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
    assert step is not None
    fake_tabby.fail_next("500", method="POST", suffix="/captures")
    first = await tabby.confirm_return(payment, return_params(step))
    assert first.outcome == Outcome.PENDING and "capture" in first.message
    second = await tabby.inquire_payment(payment)
    assert second.outcome == Outcome.SUCCESS
    references = {r.json["reference_id"] for r in fake_tabby.requests_to("/captures")}
    assert references == {payment.reference_number}
    assert len(fake_tabby.payment(start.gateway_refs["payment_id"])["captures"]) == 1


@pytest.mark.parametrize("mode", ["purchase", "authorize"])
async def test_amount_mismatch_is_reported_and_never_captured(
    fake_tabby: FakeTabby, tabby: TabbyConnector, mode: str
) -> None:
    payment, start = await begin(tabby, attempt(mode))
    with fake_tabby.lock:
        fake_tabby.payments[start.gateway_refs["payment_id"]].amount = Decimal("10.000")
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
    assert step is not None
    result = await tabby.confirm_return(payment, return_params(step))
    assert result.outcome == Outcome.SUCCESS  # the framework puts it in review
    assert (result.amount, result.currency_code) == (10_000, "KWD")
    assert fake_tabby.requests_to("/captures") == []
    if mode == "purchase":
        assert "not captured" in result.review_reason


async def test_rejected_session_and_refused_currency_fail_the_start(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    too_high = await tabby.start_checkout(checkout(attempt(amount=500_000)))
    assert too_high.outcome == Outcome.FAILED and too_high.url == ""
    assert too_high.gateway_refs.get("payment_id")
    wrong = connector_for(fake_tabby, merchant_code="AE")
    try:
        refused = await wrong.start_checkout(checkout(attempt()))
    finally:
        await wrong.aclose()
    assert refused.outcome == Outcome.FAILED
    assert "only 'AED' is supported" in refused.message


async def test_no_answer_to_the_create_is_unknown(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    fake_tabby.fail_next("500", method="POST", path="/api/v2/checkout")
    assert (await tabby.start_checkout(checkout(attempt()))).outcome == Outcome.UNKNOWN


async def test_credentials_never_reach_the_logs(
    fake_tabby: FakeTabby, tabby: TabbyConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    payment, start = await begin(tabby, attempt())
    step = DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
    assert step is not None
    fake_tabby.fail_next("reset", method="POST", suffix="/captures")
    results: list[Any] = [start, await tabby.confirm_return(payment, return_params(step))]
    results.append(await tabby.confirm_return(payment, return_params(step)))
    assert caplog.records  # the transport did log its calls
    assert TEST_SECRET_KEY not in caplog.text
    for found in results:
        assert TEST_SECRET_KEY not in repr(found)
    assert TEST_SECRET_KEY not in repr(tabby.config)


async def test_driver_notification_is_authentic_for_the_configuration(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    payment, start = await begin(tabby, attempt())
    DRIVER.pay_without_return(fake_tabby, BrowserStep("GET", start.url))
    notice, body = driver_notification(DRIVER, fake_tabby, TabbyConnector, "tabby-kwd")
    assert notice.gateway_refs == {"payment_id": start.gateway_refs["payment_id"]}
    assert b'"status": "authorized"' in body
    # The notification is only a hint: the inquiry settles (and captures) the purchase.
    assert (await tabby.inquire_payment(payment)).outcome == Outcome.SUCCESS


async def test_registered_webhook_is_sent_on_approval(
    fake_tabby: FakeTabby, tabby: TabbyConnector
) -> None:
    with receiver() as received:
        fake_tabby.register_webhook(received.url, "X-Test-Header", "value-1")
        _, start = await begin(tabby, attempt())
        DRIVER.pay(fake_tabby, BrowserStep("GET", start.url), "success")
        fake_tabby.wait_for_webhooks()
    [(headers, body)] = received.posts
    assert {k.lower(): v for k, v in headers.items()}["x-test-header"] == "value-1"
    assert start.gateway_refs["payment_id"] in body.decode()


def test_fake_checkout_refuses_what_tabby_refuses(fake_tabby: FakeTabby) -> None:
    url = f"{fake_tabby.url}/api/v2/checkout"
    auth = {"Authorization": f"Bearer {TEST_SECRET_KEY}"}
    assert httpx.post(url, json={}).status_code == 401
    missing = httpx.post(url, json={"payment": {}, "lang": "en"}, headers=auth)
    assert missing.status_code == 400 and missing.json()["errorType"] == "bad_data"
    assert "merchant_urls is required" in missing.json()["errors"]
    assert fake_tabby.sessions == {}
