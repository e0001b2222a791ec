"""QPay takes payments: the signed Action 0 form PayOps builds, the customer at the fake's page
(through the journey driver, as a browser), and the return settled from the verified SecureHash
and the Action 14 inquiry (spec/gateways-payment-acceptance.md §7)."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl

import pytest

from payops.connectors.base import (
    CheckoutRequest,
    ConnectorConfig,
    Outcome,
    PaymentRef,
)
from payops.connectors.qpay import transformers as t
from payops.connectors.qpay.connector import QpayConnector
from payops.connectors.registry import connector_class
from tests.checkout.journeys.html_forms import browser
from tests.checkout.journeys.qpay import DRIVER
from tests.connectors.qpay import fake_server
from tests.connectors.qpay.fake_server import (
    BANK_ID,
    MERCHANT_ID,
    PATH,
    SECRET,
    FakeQpay,
    sign,
)
from tests.helpers import attempt_of, browser_step, checkout_request, paid_and_returned

fake_qpay = fake_server.fake_qpay

RETURN = "http://payops.test/checkout/return/tok-456"
PUN = "PO2611300000000042"


# -- pure protocol: the guide's vectors ---------------------------------------------------------


def test_request_and_signed_result_match_the_guide_vectors() -> None:
    fields = {
        "Action": "0",
        "Amount": "20000",
        "BankID": "QIB",
        "CurrencyCode": "634",
        "ExtraFields_f14": "https://merchantUrl.com/response",
        "Lang": "en",
        "MerchantID": "simulator123",
        "MerchantModuleSessionID": "f859a6e54bd54de4ad3d",
        "NationalID": "2215275104",
        "PUN": "f859a6e54bd54de4ad3d",
        "PaymentDescription": "SamplePayment",
        "Quantity": "1",
        "TransactionRequestDate": "06082023161317",
    }
    assert t.signed("3aJYQWELpNywSw3O", fields)["SecureHash"] == (
        "2d4cd46694e97d22e3e86d6ec054afbda99e8c1f7ade8d99f4ae07544afa2ab8"
    )
    body = (
        "Response.AcquirerID=030003&Response.Amount=20000&Response.BankID=QIB&"
        "Response.CardExpiryDate=3006&Response.CardHolderName=NOT_CAPTURED&"
        "Response.CardNumber=421537******3243&"
        "Response.ConfirmationID=202308060113174499433083352&Response.CurrencyCode=634&"
        "Response.EZConnectResponseDate=06082023161626&Response.Lang=en&"
        "Response.MerchantID=simulator123&Response.MerchantModuleSessionID=f859a6e54bd54de4ad3d&"
        "Response.PUN=f859a6e54bd54de4ad3d&Response.Status=0000&"
        "Response.StatusMessage=Payment+Processed+Successfully&"
        "Response.SecureHash=660432ad41745cd716f8b799196e18c2cf84736f80014cc9816e0d53fd718760"
    )
    # The web framework hands the connector decoded form fields.
    params = dict(parse_qsl(body))
    verified = t.verified_return(params, "3aJYQWELpNywSw3O")
    assert verified is not None and verified.get("Status") == "0000"
    # PHP-style names (dots rewritten) verify too.
    php = {k.replace("Response.", "Response_"): v for k, v in params.items()}
    assert t.verified_return(php, "3aJYQWELpNywSw3O") is not None
    # Any edit, another secret, or no hash: no information.
    assert t.verified_return({**params, "Response.Status": "0001"}, "3aJYQWELpNywSw3O") is None
    assert t.verified_return(params, "another-secret") is None
    del params["Response.SecureHash"]
    assert t.verified_return(params, "3aJYQWELpNywSw3O") is None
    assert t.verified_return({"status": "0000"}, "3aJYQWELpNywSw3O") is None


def test_purchase_only_with_ottus_inquiry_window() -> None:
    cls = connector_class("qpay")
    assert cls is QpayConnector and cls.takes_payments
    assert cls.payment_modes == frozenset({"purchase"})
    assert cls.attempt_inquiry_minutes == 20


# -- the connector against the fake -------------------------------------------------------------


def connector(fake: FakeQpay, **options: str) -> QpayConnector:
    return QpayConnector(
        ConnectorConfig(
            pg_code="qpay-qar",
            is_sandbox=True,
            timeout_seconds=5.0,
            credentials={"merchant_id": MERCHANT_ID, "bank_id": BANK_ID, "secret_key": SECRET},
            options={"base_url": fake.url, **options},
        )
    )


def checkout(
    reference: str = PUN, amount: int = 20_000, *, currency: str = "QAR"
) -> CheckoutRequest:
    payment = PaymentRef(reference, amount, currency, "purchase")
    return checkout_request(
        payment,
        RETURN,
        "qpay-qar",
        "tok-456",
        merchant_name="Doha Books",
        description="Order 42 | books",
    )


attempt = attempt_of
step = browser_step


async def test_start_checkout_builds_the_signed_action_0_form(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    before = datetime.now(UTC)
    start = await gateway.start_checkout(checkout())
    assert start.outcome == Outcome.SUCCESS
    assert (start.method, start.url) == ("POST", fake_qpay.url + PATH)
    fields = dict(start.fields)
    date = fields.pop("TransactionRequestDate")
    assert fields == {
        "Action": "0",
        "Amount": "20000",
        "BankID": BANK_ID,
        "CurrencyCode": "634",
        "ExtraFields_f14": RETURN,
        "Lang": "en",
        "MerchantID": MERCHANT_ID,
        "MerchantModuleSessionID": PUN,
        "PUN": PUN,
        "PaymentDescription": "Order-42-books",
        "Quantity": "1",
        "SecureHash": sign({**fields, "TransactionRequestDate": date}),
    }
    qatar = datetime.strptime(date, "%d%m%Y%H%M%S").replace(tzinfo=t.QATAR)
    assert abs((qatar - before).total_seconds()) < 5  # Qatar time, UTC+3
    assert start.gateway_refs["pun"] == PUN
    assert datetime.fromisoformat(start.gateway_refs["requested_at"]) >= before
    assert fake_qpay.requests == []  # built locally
    assert SECRET not in repr(start)
    arabic = await gateway.start_checkout(replace(checkout(), language="ar"))
    assert arabic.fields["Lang"] == "ar"
    assert arabic.fields["SecureHash"] == sign(dict(arabic.fields))
    assert "Debit card number" in browser(step(start)).text  # the fake accepts it


async def test_start_checkout_refuses_what_qpay_would_refuse(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    foreign = await gateway.start_checkout(checkout(currency="KWD"))
    assert foreign.outcome == Outcome.FAILED and "QAR" in foreign.message
    long_pun = await gateway.start_checkout(checkout("P" * 21))
    assert long_pun.outcome == Outcome.FAILED
    assert fake_qpay.requests == []


async def test_success_is_verified_and_confirmed_by_inquiry(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_qpay, step(start), "success")
    assert back is not None and (back.method, back.url) == ("POST", RETURN)
    assert back.fields["Response.PUN"] == PUN
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert (result.outcome, result.amount, result.currency_code) == (Outcome.SUCCESS, 20_000, "QAR")
    inquiry = dict(parse_qsl(fake_qpay.requests_to(PATH)[-1].body.decode()))
    assert (inquiry["Action"], inquiry["OriginalPUN"]) == ("14", PUN)
    await gateway.aclose()


@pytest.mark.parametrize("action", ["decline", "cancel"])
async def test_decline_and_cancel_fail_the_attempt(fake_qpay: FakeQpay, action: str) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_qpay, step(start), action)  # type: ignore[arg-type]
    assert back is not None and back.fields["Response.Status"] == "3000"
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert result.outcome == Outcome.FAILED and result.amount is None


async def test_pending_stays_pending_until_the_bank_answers(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    assert DRIVER.pay(fake_qpay, step(start), "pending") is None
    payment = attempt(request, start)
    assert (await gateway.confirm_return(payment, {})).outcome == Outcome.PENDING
    fake_qpay.settle(PUN, "0000")
    late = await gateway.inquire_payment(payment)
    assert (late.outcome, late.amount, late.currency_code) == (Outcome.SUCCESS, 20_000, "QAR")


async def test_a_forged_return_changes_nothing(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    payment = attempt(request, start)
    browser(step(start))  # the payer is on QPay's page: nothing paid
    forged = DRIVER.forge_return(fake_qpay, step(start))
    assert (await gateway.confirm_return(payment, forged.fields)).outcome == Outcome.PENDING
    fake_qpay.forge_returns = True
    back = DRIVER.pay(fake_qpay, step(start), "success")
    assert back is not None and back.fields["Response.Status"] == "0000"
    assert (await gateway.confirm_return(payment, back.fields)).outcome == Outcome.PENDING
    fake_qpay.fail_next("500", path=PATH)
    assert (await gateway.confirm_return(payment, forged.fields)).outcome == Outcome.UNKNOWN


async def test_a_verified_result_settles_when_inquiry_is_down(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_qpay, step(start), "success")
    assert back is not None
    fake_qpay.fail_next("500", path=PATH)
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert (result.outcome, result.amount, result.currency_code) == (Outcome.SUCCESS, 20_000, "QAR")
    assert "CardHolderName" not in repr(result.raw) and SECRET not in repr(result)
    # A genuine result of another attempt says nothing about this one.
    other = checkout("PO2611300000000043")
    start_other = await gateway.start_checkout(other)
    fake_qpay.fail_next("500", path=PATH)
    assert (await gateway.confirm_return(attempt(other, start_other), back.fields)).outcome == (
        Outcome.UNKNOWN
    )


async def test_a_retry_of_the_same_attempt_never_charges_twice(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    first = await gateway.start_checkout(request)
    again = await gateway.start_checkout(replace(request, retry=True))
    assert again.fields["PUN"] == first.fields["PUN"] == PUN
    browser(step(first))  # a double click: the same PUN, the same open page
    back = DRIVER.pay(fake_qpay, step(again), "success")
    assert back is not None
    refused = browser(step(again))
    assert refused.status_code == 400 and "Duplicate PUN" in refused.text
    assert list(fake_qpay.payments) == [PUN] and fake_qpay.payments[PUN].status == "0000"
    # A start retried after the success does not send the browser to QPay again.
    late = await gateway.start_checkout(replace(request, retry=True))
    assert late.outcome == Outcome.UNKNOWN and not late.fields


async def test_expiry_after_the_window(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    payment = attempt(request, start)
    browser(step(start))
    assert (await gateway.inquire_payment(payment)).outcome == Outcome.PENDING  # 1220
    fake_qpay.expire(PUN)
    # 8106 within the window: maybe not there yet, still pending.
    assert (await gateway.inquire_payment(payment)).outcome == Outcome.PENDING
    old = datetime.now(UTC) - timedelta(minutes=21)
    aged = replace(payment, gateway_refs={**payment.gateway_refs, "requested_at": old.isoformat()})
    result = await gateway.inquire_payment(aged)
    assert (result.outcome, result.payment_state) == (Outcome.FAILED, "expired")
    # The configuration's window overrides Ottu's 20 minutes.
    longer = connector(fake_qpay, inquiry_window_minutes="30")
    assert (await longer.inquire_payment(aged)).outcome == Outcome.PENDING
    # The page takes nothing once expired.
    assert browser(step(start)).status_code == 400
    # A page left open past its lifetime is expired at QPay too.
    later = checkout("PO2611300000000044")
    opened = await gateway.start_checkout(later)
    browser(step(opened))
    fake_qpay.page_seconds = 0.0
    aged_page = replace(
        attempt(later, opened),
        gateway_refs={**opened.gateway_refs, "requested_at": old.isoformat()},
    )
    assert (await gateway.inquire_payment(aged_page)).payment_state == "expired"
    # An imported payment (no requested_at) is never expired this way.
    assert (
        await gateway.inquire_payment(PaymentRef(PUN, 20_000, "QAR", "purchase"))
    ).outcome == Outcome.PENDING


async def test_a_different_recorded_amount_is_reported(fake_qpay: FakeQpay) -> None:
    fake_qpay.record_amount = 19_000
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    back = DRIVER.pay(fake_qpay, step(start), "success")
    assert back is not None
    result = await gateway.confirm_return(attempt(request, start), back.fields)
    assert (result.outcome, result.amount, result.currency_code) == (Outcome.SUCCESS, 19_000, "QAR")


async def test_paid_but_never_returned_is_found_by_inquiry(fake_qpay: FakeQpay) -> None:
    gateway = connector(fake_qpay)
    request = checkout()
    start = await gateway.start_checkout(request)
    DRIVER.pay_without_return(fake_qpay, step(start))
    assert DRIVER.notify(fake_qpay, "http://payops.test/b/pg/notifications/qpay-qar") is False
    found = await gateway.inquire_payment(attempt(request, start))
    assert (found.outcome, found.amount) == (Outcome.SUCCESS, 20_000)


async def test_credentials_never_reach_logs(
    fake_qpay: FakeQpay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = connector(fake_qpay)
    start, result = await paid_and_returned(gateway, DRIVER, fake_qpay, checkout())
    assert result.outcome == Outcome.SUCCESS
    assert SECRET not in caplog.text
    assert SECRET not in repr((result, start.raw, start.gateway_refs))
