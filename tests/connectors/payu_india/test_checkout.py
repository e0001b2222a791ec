"""PayU India takes payments: the ``_payment`` form PayOps builds, the customer at the fake's
hosted page (through the journey driver, as a browser), and the return settled from the reverse
hash and verify_payment (spec/gateways-payment-acceptance.md §6)."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from decimal import Decimal
from urllib.parse import urlencode

import pytest

from payops.connectors.base import (
    CheckoutRequest,
    ConnectorConfig,
    NotificationRejected,
    Outcome,
    PaymentRef,
)
from payops.connectors.payu_india import transformers as t
from payops.connectors.payu_india.connector import PayuIndiaConnector
from tests.checkout.journeys.html_forms import browser
from tests.checkout.journeys.payu_india import DRIVER
from tests.connectors.payu_india import fake_server
from tests.connectors.payu_india.fake_server import (
    MERCHANT_KEY,
    PATH,
    SALT,
    FakePayu,
    checkout_hash,
    response_hash,
)
from tests.helpers import attempt_of, browser_step, checkout_request, paid_and_returned

fake_payu = fake_server.fake_payu

RETURN = "http://payops.test/checkout/return/tok-123"
CUSTOMER = {
    "email": "asha@example.com",
    "first_name": "Asha",
    "last_name": "Rao",
    "phone": "9876543210",
}


# -- pure protocol: the spec's vectors ---------------------------------------------------------


def test_request_and_reverse_hash_match_the_published_vectors() -> None:
    form = {
        "key": "C0Dr8m",
        "txnid": "12345",
        "amount": "10",
        "productinfo": "Shopping",
        "firstname": "Test",
        "email": "test@test.com",
        "udf2": "abc",
        "udf4": "15",
    }
    assert t.request_hash(form, "3sf0jURk") == (
        "ffcdbf04fa5beefdcc2dd476c18bc410f02b3968e7f4f54e8f43f1e1a310bb32e3b4dec9305232bb89db5b1d"
        "0c009a53bcace6f4bd8ec2f695baf3d43ba730ce"
    )
    back = {**form, "status": "success", "amount": "10.00"}
    expected = (
        "49d36feaea8792d34e7aee18c3b767cf0429815b30dac226fd5e28f67d72c41921cd228978a615"
        "0ada0785116d66341ef43a0c494dcd3e6de351b3d6f3141af4"
    )
    assert t.reverse_hash(back, "3sf0jURk") == expected
    assert t.reverse_hash_matches({**back, "hash": expected.upper()}, "3sf0jURk")
    assert not t.reverse_hash_matches({**back, "hash": expected, "status": "failure"}, "3sf0jURk")
    assert not t.reverse_hash_matches(back, "3sf0jURk")  # no hash: no information
    # With convenience fees the charges lead the sequence.
    fee = {**back, "additionalCharges": "2.00"}
    assert (
        t.reverse_hash(fee, "S")
        == hashlib.sha512(
            b"2.00|S|success|||||||15||abc||test@test.com|Test|Shopping|10.00|12345|C0Dr8m"
        ).hexdigest()
    )


def test_values_cannot_shift_the_hash_sequence() -> None:
    assert t.clean("Shoes | socks\r\n", 100) == "Shoes socks"
    with pytest.raises(t.PayuFormatError):
        t.checkout_form(
            key="K",
            salt="S",
            txnid="T1",
            amount_minor=100,
            currency_code="USD",
            productinfo="p",
            firstname="A",
            email="a@b.in",
            phone="1",
            lastname="",
            surl="s",
            furl="f",
        )


# -- the connector against the fake -------------------------------------------------------------


def connector(fake: FakePayu, **options: str) -> PayuIndiaConnector:
    return PayuIndiaConnector(
        ConnectorConfig(
            pg_code="payu-inr",
            is_sandbox=True,
            timeout_seconds=5.0,
            credentials={"merchant_key": MERCHANT_KEY, "salt": SALT},
            options={"base_url": fake.url, **options},
        )
    )


def configured(fake: FakePayu, mode: str) -> PayuIndiaConnector:
    """The connector as the journey driver configures it for ``mode``."""
    config = DRIVER.gateway_config(fake, mode)
    return PayuIndiaConnector(
        ConnectorConfig(
            pg_code="payu-inr",
            is_sandbox=True,
            timeout_seconds=5.0,
            credentials=config["credentials"],
            options=config["options"],
        )
    )


def checkout(
    reference: str = "PO-ATT-0001",
    amount: int = 125_000,
    *,
    mode: str = "purchase",
    currency: str = "INR",
    customer: dict[str, str] | None = None,
    retry: bool = False,
) -> CheckoutRequest:
    payment = PaymentRef(reference, amount, currency, mode)
    return checkout_request(
        payment,
        RETURN,
        "payu-inr",
        "tok-123",
        CUSTOMER if customer is None else customer,
        merchant_name="Acme Books",
        description="Order 42 | books",
        retry=retry,
    )


attempt = attempt_of
step = browser_step


async def test_start_checkout_builds_the_hashed_payment_form(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    start = await gateway.start_checkout(checkout())
    assert start.outcome == Outcome.SUCCESS
    assert (start.method, start.url) == ("POST", fake_payu.url + "/_payment")
    fields = dict(start.fields)
    assert fields == {
        "key": MERCHANT_KEY,
        "txnid": "PO-ATT-0001",
        "amount": "1250.00",
        "productinfo": "Order 42 books",
        "firstname": "Asha",
        "email": "asha@example.com",
        "phone": "9876543210",
        "lastname": "Rao",
        "surl": RETURN,
        "furl": RETURN + "?outcome=failure",
        "hash": checkout_hash(fields),
    }
    assert start.gateway_refs == {"txnid": "PO-ATT-0001"}
    assert SALT not in repr(start)
    assert fake_payu.requests == []  # built locally: nothing reaches PayU before the browser
    # Built to the spec's sequence: the fake, written separately, accepts it.
    assert "Card number" in browser(step(start)).text


async def test_start_checkout_refuses_what_payu_would_refuse(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    foreign = await gateway.start_checkout(checkout(currency="USD"))
    assert foreign.outcome == Outcome.FAILED and "INR" in foreign.message
    anonymous = await gateway.start_checkout(checkout(customer={}))
    assert anonymous.outcome == Outcome.FAILED
    assert "firstname, email, phone" in anonymous.message
    defaults = connector(
        fake_payu,
        default_first_name="Guest",
        default_email="g@example.com",
        default_phone="9000000000",
    )
    start = await defaults.start_checkout(checkout(customer={}))
    assert start.outcome == Outcome.SUCCESS and start.fields["firstname"] == "Guest"
    assert fake_payu.requests == []


@pytest.mark.parametrize(
    ("mode", "preauth", "outcome", "unmapped"),
    [
        ("purchase", False, Outcome.SUCCESS, "captured"),
        ("authorize", False, Outcome.SUCCESS, "auth"),  # the pre-auth merchant account
        # An authorisation on a purchase configuration is not a payment yet.
        ("purchase", True, Outcome.PENDING, "auth"),
    ],
)
async def test_success_is_confirmed_by_hash_and_verify_payment(
    fake_payu: FakePayu, mode: str, preauth: bool, outcome: Outcome, unmapped: str
) -> None:
    fake_payu.preauth = preauth
    gateway = configured(fake_payu, mode)
    request = checkout(mode=mode, customer={})  # the driver's defaults fill the customer in
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_payu, step(start), "success")
    assert back is not None and (back.method, back.url) == ("POST", RETURN)
    assert back.fields["hash"] == response_hash(back.fields)
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert result.outcome == outcome
    assert result.pg_params["result"] == unmapped
    if outcome == Outcome.SUCCESS:
        assert (result.amount, result.currency_code) == (125_000, "INR")
        assert result.gateway_refs == {"mihpayid": back.fields["mihpayid"], "txnid": "PO-ATT-0001"}
    verify = fake_payu.requests_to(PATH)[-1]
    assert b"command=verify_payment" in verify.body and b"var1=PO-ATT-0001" in verify.body
    await gateway.aclose()


@pytest.mark.parametrize(
    ("action", "state", "url"),
    [
        ("decline", None, RETURN + "?outcome=failure"),
        ("cancel", "canceled", RETURN + "?outcome=failure"),
    ],
)
async def test_decline_and_cancel_fail_the_attempt(
    fake_payu: FakePayu, action: str, state: str | None, url: str
) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_payu, step(start), action)  # type: ignore[arg-type]
    assert back is not None and back.url == url
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert result.outcome == Outcome.FAILED
    assert result.payment_state == state
    assert result.amount is None


async def test_pending_stays_pending_until_the_bank_answers(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    assert DRIVER.pay(fake_payu, step(start), "pending") is None
    payment = attempt(request, start)
    assert (await gateway.confirm_return(payment, {})).outcome == Outcome.PENDING
    assert (await gateway.inquire_payment(payment)).outcome == Outcome.PENDING
    fake_payu.settle("PO-ATT-0001", "captured")
    late = await gateway.inquire_payment(payment)
    assert (late.outcome, late.amount, late.currency_code) == (Outcome.SUCCESS, 125_000, "INR")


async def test_a_forged_return_changes_nothing(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    payment = attempt(request, start)
    forged = DRIVER.forge_return(fake_payu, step(start))
    browser(step(start))  # the customer is on PayU's page, nothing paid
    result = await gateway.confirm_return(payment, forged.fields)
    assert result.outcome == Outcome.PENDING
    # A genuine-looking post from the fake's "forged return" switch: still nothing.
    fake_payu.forge_returns = True
    back = DRIVER.pay(fake_payu, step(start), "success")
    assert back is not None and back.fields["status"] == "success"
    assert (await gateway.confirm_return(payment, back.fields)).outcome == Outcome.PENDING
    # With PayU unreachable, a forged post is still no information (not a failure either).
    fake_payu.fail_next("500", path=PATH)
    unknown = await gateway.confirm_return(payment, forged.fields)
    assert unknown.outcome == Outcome.UNKNOWN
    # Missing values: the same.
    assert (await gateway.confirm_return(payment, {"status": "failure"})).outcome == (
        Outcome.PENDING
    )


async def test_a_verified_return_settles_when_verify_payment_is_down(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_payu, step(start), "success")
    assert back is not None
    fake_payu.fail_next("timeout", path=PATH)
    fake_payu.hang_seconds = 0.2
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert (result.outcome, result.amount, result.currency_code) == (
        Outcome.SUCCESS,
        125_000,
        "INR",
    )
    # The same post edited (amount) is not PayU's: no information.
    fake_payu.fail_next("500", path=PATH)
    edited = {**back.fields, "amount": "1.00"}
    assert (await gateway.confirm_return(attempt(request, start), edited)).outcome == (
        Outcome.UNKNOWN
    )
    # Another merchant key's post (same hash scheme) is not ours.
    fake_payu.fail_next("500", path=PATH)
    other = {**back.fields, "key": "other"}
    other["hash"] = t.reverse_hash(other, SALT)
    assert (await gateway.confirm_return(attempt(request, start), other)).outcome == (
        Outcome.UNKNOWN
    )


async def test_convenience_fees_use_the_longer_reverse_hash(fake_payu: FakePayu) -> None:
    fake_payu.additional_charges = "25.00"
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_payu, step(start), "success")
    assert back is not None and back.fields["additionalCharges"] == "25.00"
    fake_payu.fail_next("500", path=PATH)
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert result.outcome == Outcome.SUCCESS


async def test_a_retry_of_the_same_attempt_never_charges_twice(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    first = await gateway.start_checkout(request)
    again = await gateway.start_checkout(replace(request, retry=True))
    assert dict(again.fields) == dict(first.fields)  # the same txnid, the same form
    # A double click posts the same txnid twice: one payment at PayU.
    browser(step(first))
    back = DRIVER.pay(fake_payu, step(again), "success")
    assert back is not None
    assert [p.txnid for p in fake_payu.payments.values()] == ["PO-ATT-0001"]
    # After the success PayU refuses the txnid: the retry cannot pay a second time.
    refused = browser(step(again))
    assert refused.status_code == 400 and "duplicate Order ID" in refused.text
    assert [p.state for p in fake_payu.payments.values()] == ["captured"]
    result = await gateway.confirm_return(attempt(request, again), back.fields)
    assert result.outcome == Outcome.SUCCESS
    # A start retried after the success does not send the browser to PayU again.
    late = await gateway.start_checkout(replace(request, retry=True))
    assert late.outcome == Outcome.UNKNOWN and not late.fields
    assert late.gateway_refs["mihpayid"] == back.fields["mihpayid"]


async def test_expiry_payer_left_the_page(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    payment = attempt(request, start)
    # Never reached PayU: verify_payment says "Not Found", pending until PayOps's own expiry.
    assert (await gateway.inquire_payment(payment)).outcome == Outcome.PENDING
    browser(step(start))
    fake_payu.expire("PO-ATT-0001")
    result = await gateway.inquire_payment(payment)
    assert (result.outcome, result.payment_state) == (Outcome.FAILED, "canceled")
    assert result.pg_params["result"] == "bounced"
    # A page that outlived its window answers the browser with the bounce.
    later = checkout("PO-ATT-0002")
    start = await gateway.start_checkout(later)
    fake_payu.page_seconds = 0.0
    back = DRIVER.pay(fake_payu, step(start), "success")
    assert back is not None and back.fields["unmappedstatus"] == "bounced"
    timed_out = await gateway.confirm_return(attempt(later, start), back.fields)
    assert (timed_out.outcome, timed_out.payment_state) == (Outcome.FAILED, "canceled")
    # A page left open past its lifetime reads bounced at verify_payment too.
    idle = checkout("PO-ATT-0003")
    start = await gateway.start_checkout(idle)
    fake_payu.page_seconds = 900.0
    browser(step(start))
    assert (await gateway.inquire_payment(attempt(idle, start))).outcome == Outcome.PENDING
    fake_payu.page_seconds = 0.0
    gone = await gateway.inquire_payment(attempt(idle, start))
    assert (gone.outcome, gone.payment_state) == (Outcome.FAILED, "canceled")


async def test_a_different_recorded_amount_is_reported(fake_payu: FakePayu) -> None:
    fake_payu.record_amount = Decimal("1200.00")
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_payu, step(start), "success")
    assert back is not None
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    # The framework compares it with the attempt's 1250.00 and puts the attempt in review.
    assert (result.outcome, result.amount, result.currency_code) == (
        Outcome.SUCCESS,
        120_000,
        "INR",
    )


async def test_paid_but_never_returned_is_found_by_inquiry_and_webhook(fake_payu: FakePayu) -> None:
    gateway = connector(fake_payu)
    request = checkout()
    start = await gateway.start_checkout(request)
    DRIVER.pay_without_return(fake_payu, step(start))
    found = await gateway.inquire_payment(attempt(request, start))
    assert (found.outcome, found.amount) == (Outcome.SUCCESS, 125_000)
    # PayU's payment webhook: the return's fields and hash, a hint naming the attempt.
    body = urlencode(fake_payu.last_decided.answer).encode()  # type: ignore[union-attr]
    note = gateway.parse_notification({"content-type": "application/x-www-form-urlencoded"}, body)
    assert note.reference == "PO-ATT-0001"
    assert note.gateway_refs["mihpayid"] == found.gateway_refs["mihpayid"]
    tampered = urlencode(
        {
            **fake_payu.last_decided.answer,  # type: ignore[union-attr]
            "status": "failure",
        }
    ).encode()
    with pytest.raises(NotificationRejected):
        gateway.parse_notification({}, tampered)


async def test_credentials_never_reach_logs_or_results(
    fake_payu: FakePayu, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = connector(fake_payu)
    start, result = await paid_and_returned(gateway, DRIVER, fake_payu, checkout())
    assert result.outcome == Outcome.SUCCESS
    assert SALT not in caplog.text and MERCHANT_KEY not in caplog.text
    kept = repr((result.raw, result.pg_params, result.gateway_refs, result.message, start.raw))
    assert SALT not in kept and MERCHANT_KEY not in kept and "512345XXXXXX2346" not in kept
