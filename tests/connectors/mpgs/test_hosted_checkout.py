"""MPGS Hosted Checkout (spec gateways-payment-acceptance.md §1) against the local fake: the
INITIATE_CHECKOUT request, the stored secret indicator, a retried start that never opens a
second session over a payment, and a return decided by Retrieve Order (the indicator is a hint).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from payops.connectors.base import CheckoutRequest, Outcome, PaymentRef
from payops.connectors.mpgs.checkout import INDICATOR_REF, SESSION_REF
from payops.connectors.mpgs.connector import MpgsConnector
from tests.connectors.mpgs.checkout_fake import DECLINED_CARD, SUCCESS_CARD
from tests.connectors.mpgs.fake_server import FakeMpgs, mpgs_fake  # noqa: F401
from tests.connectors.mpgs.test_connector import MERCHANT_ID, make_connector

RETURN = "https://payops.example/checkout/return/TOKEN0123456789abcdefghij"
SESSION_PATH = f"/api/rest/version/100/merchant/{MERCHANT_ID}/session"


@pytest.fixture
async def mpgs(mpgs_fake: FakeMpgs) -> AsyncIterator[MpgsConnector]:  # noqa: F811
    connector = make_connector(mpgs_fake)
    yield connector
    await connector.aclose()


def request(
    reference: str = "R7K2Q9",
    mode: str = "purchase",
    amount: int = 12_500,
    refs: dict[str, Any] | None = None,
    retry: bool = False,
) -> CheckoutRequest:
    return CheckoutRequest(
        payment=PaymentRef(reference, amount, "KWD", mode, refs or {}),
        return_url=RETURN,
        cancel_url=RETURN + "?outcome=cancel",
        failure_url=RETURN + "?outcome=failure",
        timeout_url=RETURN + "?outcome=timeout",
        response_url="https://payops.example/checkout/response/TOKEN",
        notification_url="https://payops.example/b/pg/notifications/mpgs-kwd",
        customer={"email": "c@example.com"},
        retry=retry,
    )


def pay(fake: FakeMpgs, url: str, card: str = SUCCESS_CARD) -> httpx.Response:
    return httpx.post(
        url.split("?", 1)[0], data={"cardNumber": card, "expiry": "05/39", "securityCode": "123"}
    )


@pytest.mark.parametrize(
    ("mode", "operation"), [("purchase", "PURCHASE"), ("authorize", "AUTHORIZE")]
)
async def test_start_sends_initiate_checkout(
    mpgs: MpgsConnector,
    mpgs_fake: FakeMpgs,  # noqa: F811
    mode: str,
    operation: str,
) -> None:
    start = await mpgs.start_checkout(request(mode=mode))
    assert start.outcome == Outcome.SUCCESS and start.method == "GET"
    [sent] = mpgs_fake.requests_to(SESSION_PATH, method="POST")
    body = json.loads(sent.body, parse_float=Decimal)
    assert body["apiOperation"] == "INITIATE_CHECKOUT"
    assert body["interaction"]["operation"] == operation
    assert body["interaction"]["returnUrl"] == RETURN
    assert body["order"] == {
        "id": "R7K2Q9",
        "amount": "12.500",
        "currency": "KWD",
        "description": "Order R7K2Q9",
        "reference": "R7K2Q9",
        "notificationUrl": "https://payops.example/b/pg/notifications/mpgs-kwd",
    }
    assert sent.header("Authorization") == mpgs_fake.expected_authorization()
    [session] = mpgs_fake.checkout.sessions.values()
    assert start.url == f"{mpgs_fake.url}/checkout/pay/{session.id}?checkoutVersion=1.0.0"
    assert start.gateway_refs == {
        "order_id": "R7K2Q9",
        SESSION_REF: session.id,
        INDICATOR_REF: session.indicator,
    }
    # The secret indicator is kept out of what PayOps may store as the raw reply.
    assert session.indicator not in json.dumps(start.raw)


async def test_wrong_credentials_fail_the_start(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    connector = make_connector(mpgs_fake, password="wrong")
    try:
        start = await connector.start_checkout(request())
    finally:
        await connector.aclose()
    assert start.outcome == Outcome.FAILED and "REQUEST_REJECTED" in start.message
    assert mpgs_fake.checkout.sessions == {}


async def test_lost_reply_is_unknown(mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    connector = make_connector(mpgs_fake, timeout=0.5)
    mpgs_fake.fail_next("timeout", method="POST", suffix="/session", apply=True)
    try:
        start = await connector.start_checkout(request())
    finally:
        await connector.aclose()
        mpgs_fake.release_hanging()
    assert start.outcome == Outcome.UNKNOWN and start.url == ""


async def test_retry_over_a_paid_order_opens_no_session(
    mpgs: MpgsConnector, mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    first = await mpgs.start_checkout(request())
    assert pay(mpgs_fake, first.url).status_code == 303
    again = await mpgs.start_checkout(request(refs=first.gateway_refs, retry=True))
    assert again.outcome == Outcome.SUCCESS and again.url == RETURN
    assert len(mpgs_fake.checkout.sessions) == 1


async def test_retry_of_an_unpaid_order_opens_a_new_session(
    mpgs: MpgsConnector, mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    first = await mpgs.start_checkout(request())
    again = await mpgs.start_checkout(request(refs=first.gateway_refs, retry=True))
    assert again.outcome == Outcome.SUCCESS and again.url != first.url
    assert again.gateway_refs[INDICATOR_REF] != first.gateway_refs[INDICATOR_REF]
    assert len(mpgs_fake.checkout.sessions) == 2


async def test_return_is_decided_by_retrieve_order(
    mpgs: MpgsConnector, mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    start = await mpgs.start_checkout(request(mode="authorize"))
    ref = PaymentRef("R7K2Q9", 12_500, "KWD", "authorize", start.gateway_refs)
    # Before paying: a forged indicator yields "pending", never a failure.
    forged = await mpgs.confirm_return(ref, {"resultIndicator": "0" * 16})
    assert forged.outcome == Outcome.PENDING and forged.raw["return_indicator"] == "mismatched"
    back = pay(mpgs_fake, start.url)
    indicator = dict(httpx.URL(back.headers["location"]).params)["resultIndicator"]
    result = await mpgs.confirm_return(ref, {"resultIndicator": indicator})
    assert result.outcome == Outcome.SUCCESS
    assert (result.amount, result.currency_code) == (12_500, "KWD")
    assert result.raw["return_indicator"] == "matched"
    assert result.gateway_refs["transaction_id"] == "1"
    # The indicator is only a hint: a missing one changes nothing about a paid order.
    assert (await mpgs.confirm_return(ref, {})).outcome == Outcome.SUCCESS


async def test_declined_then_cancelled(mpgs: MpgsConnector, mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    start = await mpgs.start_checkout(request())
    ref = PaymentRef("R7K2Q9", 12_500, "KWD", "purchase", start.gateway_refs)
    assert pay(mpgs_fake, start.url, DECLINED_CARD).status_code == 303
    declined = await mpgs.confirm_return(ref, {"resultIndicator": "x"})
    assert declined.outcome == Outcome.FAILED and declined.payment_state is None
    canceled = await mpgs.confirm_return(ref, {"outcome": "cancel"})
    assert canceled.outcome == Outcome.FAILED and canceled.payment_state == "canceled"


async def test_cancel_without_payment(mpgs: MpgsConnector, mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    start = await mpgs.start_checkout(request())
    ref = PaymentRef("R7K2Q9", 12_500, "KWD", "purchase", start.gateway_refs)
    cancel = httpx.get(start.url.split("?", 1)[0] + "/cancel")
    assert cancel.status_code == 303 and cancel.headers["location"] == RETURN + "?outcome=cancel"
    result = await mpgs.confirm_return(ref, {"outcome": "cancel"})
    assert result.outcome == Outcome.FAILED and result.payment_state == "canceled"
    timed_out = await mpgs.confirm_return(ref, {"outcome": "timeout"})
    assert timed_out.payment_state == "expired"


async def test_another_amount_is_reported(mpgs: MpgsConnector, mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    start = await mpgs.start_checkout(request())
    mpgs_fake.checkout.charge_amount = Decimal("1.000")
    pay(mpgs_fake, start.url)
    ref = PaymentRef("R7K2Q9", 12_500, "KWD", "purchase", start.gateway_refs)
    result = await mpgs.confirm_return(ref, {})
    # Success as MPGS says it, for the amount it took: PayOps puts the attempt in review.
    assert result.outcome == Outcome.SUCCESS and result.amount == 1_000


async def test_expired_session_page(mpgs: MpgsConnector, mpgs_fake: FakeMpgs) -> None:  # noqa: F811
    start = await mpgs.start_checkout(request())
    mpgs_fake.checkout.expire_sessions()
    page = httpx.get(start.url)
    assert page.status_code == 410 and RETURN + "?outcome=timeout" in page.text.replace(
        "&amp;", "&"
    )
