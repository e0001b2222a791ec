"""N-Genius's payment side (order, payment page, return) against the fake N-Genius, at the
connector level: the exact order request, the customer's choices on the payment page through the
journey driver, and what ``confirm_return`` / ``inquire_payment`` make of them."""

from __future__ import annotations

import logging
from dataclasses import replace
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
from payops.connectors.ngenius import tokens as token_cache
from payops.connectors.ngenius.connector import NgeniusConnector
from payops.connectors.registry import connector_class
from tests.checkout.journeys import BrowserStep, driver
from tests.connectors.ngenius.fake_server import (
    API_KEY,
    OUTLET,
    FakeNgenius,
    ngenius_fake,  # noqa: F401 - fixtures
    ngenius_server,  # noqa: F401
)
from tests.helpers import (
    begun,
    checkout_request,
    driver_notification,
    forged_return,
    new_attempt,
    returned_params,
    started,
)

DRIVER = driver("ngenius")
RETURN = "http://payops.test/checkout/return/tok-2b8e41"
AMOUNT = 12_550  # 125.50 AED
PAYMENT_TYPE = "application/vnd.ni-payment.v2+json"


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    token_cache.clear_token_cache()


@pytest.fixture
def fake(ngenius_fake: FakeNgenius) -> FakeNgenius:  # noqa: F811
    return ngenius_fake


def connector_for(fake: FakeNgenius, **options: Any) -> NgeniusConnector:
    return NgeniusConnector(
        ConnectorConfig(
            pg_code="ngenius-aed",
            is_sandbox=True,
            credentials={"api_key": API_KEY, "outlet_reference": OUTLET},
            timeout_seconds=3.0,
            options={"base_url": fake.url, **options},
        )
    )


@pytest.fixture
async def ngenius(fake: FakeNgenius) -> Any:
    connector = connector_for(fake)
    yield connector
    await connector.aclose()


def attempt(mode: str = "purchase", amount: int = AMOUNT, currency: str = "AED") -> PaymentRef:
    return new_attempt(amount, currency, mode)


def checkout(payment: PaymentRef, **changes: Any) -> CheckoutRequest:
    customer = changes.pop(
        "customer",
        {"email": "payer@example.com", "first_name": "Test", "last_name": "Payer"},
    )
    return checkout_request(payment, RETURN, "ngenius-aed", "tok-2b8e41", customer, **changes)


def return_params(step: BrowserStep) -> dict[str, str]:
    return returned_params(step, RETURN)


async def begin(
    connector: NgeniusConnector, payment: PaymentRef, **changes: Any
) -> tuple[PaymentRef, CheckoutStart]:
    return await begun(connector, checkout(payment, **changes))


def creates(fake: FakeNgenius) -> list[Any]:
    return [
        r
        for r in fake.requests
        if r.method == "POST" and r.path == f"/transactions/outlets/{OUTLET}/orders"
    ]


def test_ngenius_takes_payments_with_ottus_inquiry_window() -> None:
    cls = connector_class("ngenius")
    assert cls.takes_payments is True
    assert cls.attempt_inquiry_minutes == 8
    assert cls.payment_modes == frozenset({"purchase", "authorize"})


@pytest.mark.parametrize(("mode", "action"), [("purchase", "PURCHASE"), ("authorize", "AUTH")])
async def test_order_request_is_n_genius_order_creation(
    fake: FakeNgenius, ngenius: NgeniusConnector, mode: str, action: str
) -> None:
    payment = attempt(mode)
    start = await ngenius.start_checkout(checkout(payment))
    token, sent = fake.requests
    assert (token.method, token.path) == ("POST", "/identity/auth/access-token")
    assert token.header("Authorization") == f"Basic {API_KEY}"
    assert (sent.method, sent.path) == ("POST", f"/transactions/outlets/{OUTLET}/orders")
    assert sent.header(
        "Authorization",
    ).startswith("Bearer ")
    assert sent.header("Content-Type") == PAYMENT_TYPE and sent.header("Accept") == PAYMENT_TYPE
    assert sent.json == {
        "action": action,
        "amount": {"currencyCode": "AED", "value": AMOUNT},  # integer minor units
        "emailAddress": "payer@example.com",
        "merchantOrderReference": payment.reference_number,
        "language": "en",
        "merchantAttributes": {
            "redirectUrl": RETURN,
            "skipConfirmationPage": True,
            "cancelUrl": f"{RETURN}?outcome=cancel",
            "cancelText": "Back to the merchant",
        },
        "billingAddress": {"firstName": "Test", "lastName": "Payer"},
        "merchantDefinedData": {"attempt": payment.reference_number},
    }
    [order] = fake.order_of_reference(payment.reference_number)
    assert start.outcome == Outcome.SUCCESS and start.method == "GET"
    assert start.url == f"{fake.url}/paypage/?code={order.code}"
    assert start.gateway_refs == {
        "order_reference": order.ref,
        "outlet_reference": OUTLET,
        "payment_page": start.url,
    }


async def test_three_decimal_currency_is_sent_in_its_minor_units(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    await begin(ngenius, attempt(amount=12_345, currency="KWD"))
    assert creates(fake)[0].json["amount"] == {"currencyCode": "KWD", "value": 12345}


@pytest.mark.parametrize(
    ("mode", "state"), [("purchase", "PURCHASED"), ("authorize", "AUTHORISED")]
)
async def test_paid_order(
    fake: FakeNgenius, ngenius: NgeniusConnector, mode: str, state: str
) -> None:
    payment, start = await begin(ngenius, attempt(mode))
    step = DRIVER.pay(fake, BrowserStep("GET", start.url), "success")
    assert step is not None
    params = return_params(step)
    assert params == {"ref": start.gateway_refs["order_reference"]}
    result = await ngenius.confirm_return(payment, params)
    assert result.outcome == Outcome.SUCCESS, result.message
    assert (result.amount, result.currency_code) == (AMOUNT, "AED")
    assert result.payment_state is None
    [order] = fake.order_of_reference(payment.reference_number)
    assert order.payments[-1].state == state
    assert result.gateway_refs == {
        "order_reference": order.ref,
        "payment_reference": order.payments[-1].ref,
    }
    assert result.pg_params["card_number"] == "************1111"
    # A second return reads the same order and says the same.
    assert (await ngenius.confirm_return(payment, params)).outcome == Outcome.SUCCESS
    assert len(creates(fake)) == 1


async def test_sale_action_ends_captured(fake: FakeNgenius) -> None:
    connector = connector_for(fake, purchase_action="SALE")
    try:
        payment, start = await begin(connector, attempt("purchase"))
        assert creates(fake)[0].json["action"] == "SALE"
        step = DRIVER.pay(fake, BrowserStep("GET", start.url), "success")
        assert step is not None
        result = await connector.confirm_return(payment, return_params(step))
    finally:
        await connector.aclose()
    assert result.outcome == Outcome.SUCCESS and result.amount == AMOUNT
    assert fake.order_of_reference(payment.reference_number)[0].payments[-1].state == "CAPTURED"


async def test_declined(fake: FakeNgenius, ngenius: NgeniusConnector) -> None:
    payment, start = await begin(ngenius, attempt())
    step = DRIVER.pay(fake, BrowserStep("GET", start.url), "decline")
    assert step is not None
    result = await ngenius.confirm_return(payment, return_params(step))
    assert result.outcome == Outcome.FAILED and result.payment_state is None
    assert result.amount is None


async def test_cancelled_on_the_page(fake: FakeNgenius, ngenius: NgeniusConnector) -> None:
    payment, start = await begin(ngenius, attempt())
    step = DRIVER.pay(fake, BrowserStep("GET", start.url), "cancel")
    assert step is not None and step.url == f"{RETURN}?outcome=cancel"
    result = await ngenius.confirm_return(payment, return_params(step))
    assert result.outcome == Outcome.FAILED and result.payment_state == "canceled"


async def test_three_d_secure_left_pending(fake: FakeNgenius, ngenius: NgeniusConnector) -> None:
    payment, start = await begin(ngenius, attempt())
    assert DRIVER.pay(fake, BrowserStep("GET", start.url), "pending") is None
    assert (await ngenius.confirm_return(payment, {})).outcome == Outcome.PENDING
    # A "cancel" hint does not cancel a payment N-Genius is still authenticating.
    hinted = await ngenius.confirm_return(payment, {"outcome": "cancel"})
    assert hinted.outcome == Outcome.PENDING
    assert (await ngenius.inquire_payment(payment)).outcome == Outcome.PENDING


async def test_forged_return_is_neither_success_nor_failure(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    started_attempt = await begin(ngenius, attempt())
    result = await forged_return(ngenius, DRIVER, fake, started_attempt, RETURN, "ref")
    assert result.outcome == Outcome.PENDING  # only the stored order was read

    # Another attempt's paid order named in the return of an attempt with nothing stored.
    other, other_start = await begin(ngenius, attempt())
    DRIVER.pay(fake, BrowserStep("GET", other_start.url), "success")
    victim = attempt()
    stolen = await ngenius.confirm_return(
        victim, {"ref": other_start.gateway_refs["order_reference"]}
    )
    assert stolen.outcome == Outcome.PENDING and stolen.amount is None
    assert stolen.gateway_refs == {}


async def test_returned_ref_is_used_when_nothing_is_stored_if_it_is_this_attempts(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    payment, start = await begin(ngenius, attempt())
    step = DRIVER.pay(fake, BrowserStep("GET", start.url), "success")
    assert step is not None
    result = await ngenius.confirm_return(attempt_without_refs(payment), return_params(step))
    assert result.outcome == Outcome.SUCCESS
    assert result.gateway_refs["order_reference"] == start.gateway_refs["order_reference"]


def attempt_without_refs(payment: PaymentRef) -> PaymentRef:
    return replace(payment, gateway_refs={})


async def test_lost_create_reply_then_retry_leaves_one_payable_order(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    payment = attempt()
    fake.inject("create", "reset", perform=True)
    lost = await ngenius.start_checkout(checkout(payment))
    assert lost.outcome == Outcome.UNKNOWN
    [orphan] = fake.order_of_reference(payment.reference_number)
    retry = await ngenius.start_checkout(checkout(payment, retry=True))
    assert retry.outcome == Outcome.SUCCESS
    assert retry.gateway_refs["order_reference"] != orphan.ref
    paid = started(payment, retry)
    step = DRIVER.pay(fake, BrowserStep("GET", retry.url), "success")
    assert step is not None
    assert (await ngenius.confirm_return(paid, return_params(step))).outcome == Outcome.SUCCESS
    # One payment only: the lost order's page reached nobody and is still unpaid.
    states = sorted(o.payments[-1].state for o in fake.order_of_reference(payment.reference_number))
    assert states == ["PURCHASED", "STARTED"]


async def test_a_second_start_of_the_same_attempt_reuses_its_order(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    payment, first = await begin(ngenius, attempt())
    again = await ngenius.start_checkout(checkout(payment))
    assert again.outcome == Outcome.SUCCESS and again.url == first.url
    assert len(creates(fake)) == 1
    step = DRIVER.pay(fake, BrowserStep("GET", first.url), "success")
    assert step is not None
    after_payment = await ngenius.start_checkout(checkout(payment))
    assert after_payment.url == f"{RETURN}?ref={first.gateway_refs['order_reference']}"
    assert len(creates(fake)) == 1


async def test_expiry(fake: FakeNgenius) -> None:
    connector = connector_for(fake, payment_page_minutes=0)
    try:
        payment, start = await begin(connector, attempt())
        result = await connector.inquire_payment(payment)
    finally:
        await connector.aclose()
    assert result.outcome == Outcome.FAILED and result.payment_state == "expired"
    fake.page_lifetime = 0
    assert httpx.get(start.url).status_code == 410


async def test_never_returned_payment_is_found_by_the_inquiry(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    payment, start = await begin(ngenius, attempt("authorize"))
    DRIVER.pay_without_return(fake, BrowserStep("GET", start.url))
    result = await ngenius.inquire_payment(payment)
    assert result.outcome == Outcome.SUCCESS and result.amount == AMOUNT


async def test_amount_mismatch_is_reported(fake: FakeNgenius, ngenius: NgeniusConnector) -> None:
    payment, start = await begin(ngenius, attempt())
    order = fake.order_of_page(start.url)
    with fake.lock:
        order.payments[-1].value = 10_000
    step = DRIVER.pay(fake, BrowserStep("GET", start.url), "success")
    assert step is not None
    result = await ngenius.confirm_return(payment, return_params(step))
    assert result.outcome == Outcome.SUCCESS  # the framework puts it in review
    assert (result.amount, result.currency_code) == (10_000, "AED")


async def test_refused_and_unanswered_orders(fake: FakeNgenius, ngenius: NgeniusConnector) -> None:
    no_email = await ngenius.start_checkout(checkout(attempt(), customer={}))
    assert no_email.outcome == Outcome.FAILED and "email" in no_email.message
    assert creates(fake) == []
    fake.inject("create", "decline")
    refused = await ngenius.start_checkout(checkout(attempt()))
    assert refused.outcome == Outcome.FAILED
    assert refused.message == "The order was declined by the acquirer"
    fake.inject("create", "500")
    assert (await ngenius.start_checkout(checkout(attempt()))).outcome == Outcome.UNKNOWN
    fallback = connector_for(fake, default_email="payments@merchant.example")
    try:
        start = await fallback.start_checkout(checkout(attempt(), customer={}))
    finally:
        await fallback.aclose()
    assert start.outcome == Outcome.SUCCESS
    assert creates(fake)[-1].json["emailAddress"] == "payments@merchant.example"


async def test_credentials_never_reach_the_logs(
    fake: FakeNgenius, ngenius: NgeniusConnector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    payment, start = await begin(ngenius, attempt())
    step = DRIVER.pay(fake, BrowserStep("GET", start.url), "success")
    assert step is not None
    result = await ngenius.confirm_return(payment, return_params(step))
    fake.inject("create", "reset")
    lost = await ngenius.start_checkout(checkout(attempt()))
    assert caplog.records
    tokens = list(fake.tokens)
    for found in (start, result, lost):
        assert API_KEY not in repr(found)
        assert all(token not in repr(found) for token in tokens)
    assert API_KEY not in caplog.text
    assert all(token not in caplog.text for token in tokens)


async def test_driver_notification_is_authentic_for_the_configuration(
    fake: FakeNgenius, ngenius: NgeniusConnector
) -> None:
    payment, start = await begin(ngenius, attempt())
    DRIVER.pay_without_return(fake, BrowserStep("GET", start.url))
    notice, _ = driver_notification(DRIVER, fake, NgeniusConnector, "ngenius-aed")
    assert notice.gateway_refs == {"order_reference": start.gateway_refs["order_reference"]}
    assert (await ngenius.inquire_payment(payment)).outcome == Outcome.SUCCESS


def test_fake_order_creation_refuses_what_n_genius_refuses(fake: FakeNgenius) -> None:
    url = f"{fake.url}/transactions/outlets/{OUTLET}/orders"
    body = {
        "action": "PURCHASE",
        "amount": {"currencyCode": "AED", "value": 100},
        "emailAddress": "payer@example.com",
    }
    assert httpx.post(url, json=body).status_code == 401
    token = httpx.post(
        f"{fake.url}/identity/auth/access-token",
        headers={
            "Authorization": f"Basic {API_KEY}",
            "Content-Type": "application/vnd.ni-identity.v1+json",
        },
    ).json()["access_token"]
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": PAYMENT_TYPE,
        "Content-Type": PAYMENT_TYPE,
    }
    assert (
        httpx.post(
            url, json=body, headers={**headers, "Content-Type": "application/json"}
        ).status_code
        == 415
    )
    as_text = {**body, "amount": {"currencyCode": "AED", "value": "1.00"}}
    assert httpx.post(url, json=as_text, headers=headers).status_code == 400
    no_email = {k: v for k, v in body.items() if k != "emailAddress"}
    assert httpx.post(url, json=no_email, headers=headers).status_code == 400
    assert fake.orders == {}
    assert httpx.post(url, json=body, headers=headers).status_code == 201
