"""Taking a payment through MyFatoorah: the connector's start_checkout / confirm_return /
inquire_payment against the fake's invoice API and its payment page, driven like a browser."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    ConnectorConfig,
    Outcome,
    PaymentRef,
)
from payops.connectors.myfatoorah.connector import MyFatoorahConnector
from payops.connectors.registry import connector_class
from tests.checkout.journeys import BrowserStep
from tests.checkout.journeys.myfatoorah import DRIVER, WEBHOOK_SECRET
from tests.connectors.myfatoorah.fake_server import TEST_API_TOKEN, FakeMyFatoorah

PUBLIC = "https://payops.example"
_refs = itertools.count(1)


@pytest.fixture
def fake() -> Iterator[FakeMyFatoorah]:
    with DRIVER.fake() as running:
        yield running


def connector_for(fake: FakeMyFatoorah, **options: Any) -> MyFatoorahConnector:
    return MyFatoorahConnector(
        ConnectorConfig(
            pg_code="myfatoorah-kwd",
            is_sandbox=True,
            credentials={"api_token": TEST_API_TOKEN},
            timeout_seconds=5.0,
            options={"base_url": fake.url, **options},
            webhook_secret=WEBHOOK_SECRET,
        )
    )


def attempt(
    amount: int = 12_500,
    *,
    mode: str = "purchase",
    refs: dict[str, Any] | None = None,
    reference: str | None = None,
) -> PaymentRef:
    return PaymentRef(
        reference_number=reference or f"MFATT{next(_refs):06d}",
        amount=amount,
        currency_code="KWD",
        operation_mode=mode,
        gateway_refs=refs or {},
    )


def checkout(
    payment: PaymentRef, *, retry: bool = False, expires_at: datetime | None = None
) -> CheckoutRequest:
    token = f"tok{payment.reference_number}"
    return CheckoutRequest(
        payment=payment,
        return_url=f"{PUBLIC}/checkout/return/{token}",
        cancel_url=f"{PUBLIC}/checkout/return/{token}?outcome=cancel",
        failure_url=f"{PUBLIC}/checkout/return/{token}?outcome=failure",
        response_url=f"{PUBLIC}/checkout/response/{token}",
        notification_url=f"{PUBLIC}/b/pg/notifications/myfatoorah-kwd",
        merchant_name="Test Shop",
        description="Order 1",
        customer={
            "email": "buyer@example.com",
            "first_name": "Sara",
            "last_name": "Ali",
            "phone": "55512345",
        },
        expires_at=expires_at,
        retry=retry,
    )


def stored(payment: PaymentRef, start: CheckoutStart) -> PaymentRef:
    """The attempt as PayOps keeps it after the start (its gateway_refs recorded)."""
    return PaymentRef(
        payment.reference_number,
        payment.amount,
        payment.currency_code,
        payment.operation_mode,
        {**payment.gateway_refs, **start.gateway_refs},
    )


def params_of(step: BrowserStep) -> dict[str, str]:
    return {**dict(parse_qsl(urlsplit(step.url).query)), **step.fields}


async def start(
    connector: MyFatoorahConnector, payment: PaymentRef, **kwargs: Any
) -> tuple[PaymentRef, CheckoutStart]:
    begun = await connector.start_checkout(checkout(payment, **kwargs))
    assert begun.outcome == Outcome.SUCCESS, begun.message
    return stored(payment, begun), begun


def test_takes_payments_with_ottus_inquiry_window() -> None:
    cls = connector_class("myfatoorah")
    assert cls.takes_payments and cls.attempt_inquiry_minutes == 8
    assert cls.payment_modes == frozenset({"purchase", "authorize"})
    assert not cls.posts_result


async def test_send_payment_request_is_exactly_the_documented_one(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment = attempt(12_500)
    expires = datetime(2026, 12, 1, 7, 30, tzinfo=UTC)
    begun = await connector.start_checkout(checkout(payment, expires_at=expires))
    await connector.aclose()
    [sent] = fake.requests_to("/v2/SendPayment")
    assert sent.header("Authorization") == f"Bearer {TEST_API_TOKEN}"
    assert sent.header("Content-Type") == "application/json"
    assert b'"InvoiceValue":12.500' in sent.body  # a JSON number, 3 decimals, never a float
    token = f"tok{payment.reference_number}"
    assert sent.json == {
        "InvoiceValue": Decimal("12.500"),
        "DisplayCurrencyIso": "KWD",
        "CallBackUrl": f"{PUBLIC}/checkout/return/{token}",
        "ErrorUrl": f"{PUBLIC}/checkout/return/{token}?outcome=failure",
        "CustomerName": "Sara Ali",
        "CustomerEmail": "buyer@example.com",
        "CustomerMobile": "55512345",
        "CustomerReference": payment.reference_number,
        "Language": "en",
        "ExpiryDate": "2026-12-01T10:30:00",  # Asia/Kuwait local time
        "SourceInfo": "PayOps",
        "NotificationOption": "LNK",
    }
    [invoice] = fake.created()
    assert begun.outcome == Outcome.SUCCESS and begun.method == "GET"
    assert begun.url == f"{fake.url}/En/KWT/PayInvoice/Checkout?invoiceKey={invoice.key}"
    assert begun.gateway_refs["invoice_id"] == str(invoice.id)


async def test_execute_payment_for_a_configured_payment_method(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake, payment_method_id="2")
    payment = attempt(1_000)
    _, begun = await start(connector, payment)
    await connector.aclose()
    [sent] = fake.requests_to("/v2/ExecutePayment")
    assert sent.json["PaymentMethodId"] == 2 and sent.json["InvoiceValue"] == Decimal("1.000")
    assert "NotificationOption" not in sent.json
    assert sent.json["CustomerReference"] == payment.reference_number
    assert "paymentGatewayId=2" in begun.url


async def test_a_refused_create_fails_the_attempt_and_creates_nothing(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    request = checkout(attempt())
    too_long = CheckoutRequest(**{**request.__dict__, "return_url": f"{PUBLIC}/{'x' * 260}"})
    begun = await connector.start_checkout(too_long)
    await connector.aclose()
    assert begun.outcome == Outcome.FAILED and "CallBackUrl" in begun.message
    assert fake.created() == []


@pytest.mark.parametrize(
    ("action", "outcome", "state"),
    [
        ("success", Outcome.SUCCESS, None),
        ("decline", Outcome.FAILED, None),
        ("cancel", Outcome.FAILED, "canceled"),
    ],
)
async def test_customer_at_the_page_then_return_confirmed_by_get_payment_status(
    fake: FakeMyFatoorah, action: Any, outcome: Outcome, state: str | None
) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt(12_500))
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), action)
    assert back is not None
    expected_url = "/checkout/return/" if action == "success" else "outcome=failure"
    assert expected_url in back.url and "paymentId=" in back.url
    found = await connector.confirm_return(payment, params_of(back))
    await connector.aclose()
    assert found.outcome == outcome, found.message
    assert found.payment_state == state
    # The browser's paymentId was read back at MyFatoorah, by PaymentId.
    assert fake.requests_to("/v2/GetPaymentStatus")[-1].json == {
        "Key": params_of(back)["paymentId"],
        "KeyType": "PaymentId",
    }
    if outcome == Outcome.SUCCESS:
        assert (found.amount, found.currency_code) == (12_500, "KWD")
        assert found.review_reason == ""
        assert found.gateway_refs["payment_id"] == params_of(back)["paymentId"]


async def test_pending_3ds_stays_pending_until_the_bank_answers(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt())
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "pending") is None
    assert (await connector.inquire_payment(payment)).outcome == Outcome.PENDING
    fake.complete_pending(payment.gateway_refs["invoice_id"])
    found = await connector.inquire_payment(payment)
    await connector.aclose()
    assert found.outcome == Outcome.SUCCESS and found.amount == 12_500


async def test_decline_then_success_on_the_same_invoice(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt())
    declined = DRIVER.pay(fake, BrowserStep("GET", begun.url), "decline")
    assert declined is not None
    paid = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert paid is not None
    # Coming back from the earlier (declined) transaction: the invoice is paid all the same.
    found = await connector.confirm_return(payment, params_of(declined))
    await connector.aclose()
    assert found.outcome == Outcome.SUCCESS


async def test_duplicate_payment_is_paid_and_flagged_for_review(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt())
    fake.duplicate_next = True
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back is not None
    found = await connector.confirm_return(payment, params_of(back))
    await connector.aclose()
    assert found.outcome == Outcome.SUCCESS and found.amount == 12_500
    assert "DuplicatePayment" in found.review_reason


@pytest.mark.parametrize(
    ("mode", "outcome"), [("authorize", Outcome.SUCCESS), ("purchase", Outcome.PENDING)]
)
async def test_authorize_capture_account(fake: FakeMyFatoorah, mode: str, outcome: Outcome) -> None:
    connector = connector_for(fake)
    fake.authorize_only = True
    payment, begun = await start(connector, attempt(mode=mode))
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back is not None
    found = await connector.confirm_return(payment, params_of(back))
    await connector.aclose()
    assert found.outcome == outcome, found.message


async def test_forged_or_missing_payment_id_changes_nothing(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt())
    at_gateway = BrowserStep("GET", begun.url)
    forged = DRIVER.forge_return(fake, at_gateway)
    for params in (params_of(forged), {}, {"paymentId": "../../x"}):
        found = await connector.confirm_return(payment, params)
        assert found.outcome == Outcome.PENDING, found.message
    # Someone else's real, paid payment id does not pay this attempt either.
    other, other_begun = await start(connector, attempt())
    paid_elsewhere = DRIVER.pay(fake, BrowserStep("GET", other_begun.url), "success")
    assert paid_elsewhere is not None
    found = await connector.confirm_return(payment, params_of(paid_elsewhere))
    assert found.outcome == Outcome.PENDING
    # A real decline on this invoice is a failure (from MyFatoorah, not from the browser).
    assert DRIVER.pay(fake, at_gateway, "decline") is not None
    found = await connector.confirm_return(payment, params_of(forged))
    await connector.aclose()
    assert found.outcome == Outcome.FAILED


async def test_lost_create_reply_then_retry_reuses_the_invoice(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    fake.hang_seconds = 6.0
    payment = attempt()
    fake.fail_next("timeout", endpoint="/v2/SendPayment", apply=True)
    lost = await connector.start_checkout(checkout(payment))
    fake.release_hanging()
    assert lost.outcome == Outcome.UNKNOWN
    assert len(fake.created()) == 1  # MyFatoorah did create it
    again = await connector.start_checkout(checkout(payment, retry=True))
    assert again.outcome == Outcome.SUCCESS, again.message
    assert len(fake.created()) == 1  # and nothing more
    [invoice] = fake.created()
    assert again.gateway_refs["invoice_id"] == str(invoice.id)
    assert fake.requests_to("/v2/GetPaymentStatus")[-1].json == {
        "Key": payment.reference_number,
        "KeyType": "CustomerReference",
    }
    # Its page was never shown: the browser goes straight back to PayOps, which reads it.
    assert again.url == checkout(payment).return_url
    # A retry before anything was created creates it once.
    fresh = attempt()
    created = await connector.start_checkout(checkout(fresh, retry=True))
    assert created.outcome == Outcome.SUCCESS and len(fake.created()) == 2
    # An attempt that already has its invoice and page is sent there again.
    kept = stored(fresh, created)
    resent = await connector.start_checkout(checkout(kept))
    assert resent.url == created.url and len(fake.created()) == 2
    # Once that invoice is paid, a new start sends the browser back to PayOps to read it.
    assert DRIVER.pay(fake, BrowserStep("GET", created.url), "success") is not None
    after = await connector.start_checkout(checkout(kept, retry=True))
    await connector.aclose()
    assert after.url == checkout(kept).return_url and len(fake.created()) == 2


async def test_inquiry_of_an_attempt_whose_create_reply_was_lost(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment = attempt()
    _, begun = await start(connector, payment)
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "success") is not None
    found = await connector.inquire_payment(payment)  # no invoice id recorded
    await connector.aclose()
    assert found.outcome == Outcome.SUCCESS
    assert found.gateway_refs["invoice_id"] == begun.gateway_refs["invoice_id"]


async def test_expired_invoice(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(
        connector, attempt(), expires_at=datetime.now(UTC) + timedelta(minutes=30)
    )
    invoice_id = payment.gateway_refs["invoice_id"]
    assert (await connector.inquire_payment(payment)).outcome == Outcome.PENDING
    fake.expire(invoice_id)
    found = await connector.inquire_payment(payment)
    assert (found.outcome, found.payment_state) == (Outcome.FAILED, "expired")
    # The page no longer takes the card.
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "success") is None
    assert fake.invoice(invoice_id)["InvoiceStatus"] == "Pending"
    await connector.aclose()


async def test_a_different_confirmed_amount_is_reported(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt(12_500))
    fake.set_invoice_value(payment.gateway_refs["invoice_id"], "10.000")
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back is not None
    found = await connector.confirm_return(payment, params_of(back))
    await connector.aclose()
    assert found.outcome == Outcome.SUCCESS
    assert (found.amount, found.currency_code) == (10_000, "KWD")  # PayOps puts it in review


async def test_the_webhook_about_the_payment_is_authentic(fake: FakeMyFatoorah) -> None:
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt())
    assert DRIVER.pay(fake, BrowserStep("GET", begun.url), "success") is not None
    body, headers = fake.webhook(payment.gateway_refs["invoice_id"])
    notice = connector.parse_notification(headers, body)
    await connector.aclose()
    assert notice.gateway_refs["invoice_id"] == payment.gateway_refs["invoice_id"]
    assert notice.reference == payment.reference_number


async def test_the_api_token_never_reaches_the_logs(
    fake: FakeMyFatoorah, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    connector = connector_for(fake)
    payment, begun = await start(connector, attempt())
    back = DRIVER.pay(fake, BrowserStep("GET", begun.url), "success")
    assert back is not None
    found = await connector.confirm_return(payment, params_of(back))
    fake.fail_next("timeout", endpoint="/v2/SendPayment", apply=True)
    fake.hang_seconds = 6.0
    await connector.start_checkout(checkout(attempt()))
    fake.release_hanging()
    await connector.aclose()
    assert caplog.records  # something was logged
    assert TEST_API_TOKEN not in caplog.text
    assert TEST_API_TOKEN not in repr(found) and TEST_API_TOKEN not in repr(begun)
