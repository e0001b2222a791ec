"""PayOps's HTTP API with an N-Genius gateway configuration, against the fake gateway.

Every test runs on SQLite and PostgreSQL (the ``backend`` fixture behind ``client``). A payment
taken at N-Genius is registered with ``seed.imported``; its order and payment references are the
fake's.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from payops.connectors.base import ConnectorConfig
from payops.connectors.ngenius import tokens as token_cache
from payops.connectors.ngenius.connector import NgeniusConnector
from payops.context import AppContext
from payops.money import parse_amount
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.ngenius.fake_server import (
    API_KEY,
    CARD_TOKEN,
    OUTLET,
    FakeNgenius,
    declined_response,
    ngenius_fake,  # noqa: F401 - fixtures
    ngenius_server,  # noqa: F401
    order_status_response,
)
from tests.e2e import NOT_SUPPORTED, assert_unconfirmed, post_op
from tests.helpers import Seed

SHORT = 1.0  # the gateway timeout where a hang is the point
CREDENTIALS = {"api_key": API_KEY, "outlet_reference": OUTLET}
auth = e2e.auth  # an API key: holds every permission


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    token_cache.clear_token_cache()


@pytest.fixture
def fake(ngenius_fake: FakeNgenius) -> FakeNgenius:  # noqa: F811
    return ngenius_fake


async def ngenius_payment(
    seed: Seed,
    fake: FakeNgenius,
    *,
    state: str = "authorized",
    amount: str = "100.00",
    currency: str = "AED",
    action: str | None = None,
    timeout: float | None = None,
    **gateway_options: Any,
) -> tuple[str, str]:
    """A payment taken at N-Genius, imported into PayOps as ORD-1; (order ref, payment ref)."""
    action = action or ("AUTH" if state == "authorized" else "PURCHASE")
    order_ref, payment_ref = fake.create_order(action, parse_amount(amount, currency), currency)
    await seed.imported(
        connector="ngenius",
        code=f"ngenius-{currency.lower()}",
        amount=amount,
        currency=currency,
        state=state,
        gateway_refs={"order_reference": order_ref, "payment_reference": payment_ref},
        credentials=CREDENTIALS,
        options=e2e.gateway_options(fake.url, timeout),
        **gateway_options,
    )
    return order_ref, payment_ref


async def prewarm(fake: FakeNgenius, order_ref: str) -> None:
    """Cache an access token with a generous timeout, so a short-timeout call makes only the
    operation's own request."""
    from payops.connectors.base import PaymentRef

    conn = NgeniusConnector(ConnectorConfig("warm", True, CREDENTIALS, 5.0, {"base_url": fake.url}))
    try:
        await conn.inquire_payment(
            PaymentRef("W", 1, "AED", "purchase", {"order_reference": order_ref})
        )
    finally:
        await conn.aclose()


# -- successes -------------------------------------------------------------------------------------


async def test_capture_partial_then_the_rest(
    client: httpx.AsyncClient, seed: Seed, fake: FakeNgenius, auth: dict[str, str]
) -> None:
    order_ref, _ = await ngenius_payment(seed, fake)
    first = await post_op(client, auth, "capture", "40.00")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["operation"], body["amount"], body["result"], body["success"]) == (
        "capture",
        "40.00",
        "success",
        True,
    )
    assert body["txn"]["state"] == "paid"
    assert body["txn"]["amount"] == "40.00"
    assert body["pg_code"] and "gateway_name" not in body  # exactly ExternalOperation
    capture = fake.payment(order_ref).captures[0]
    assert body["pg_params"]["transaction_id"] == capture.ref
    assert body["pg_response"]["_embedded"]["cnp:capture"][0]["state"] == "SUCCESS"
    assert fake.calls("POST", "/captures")[0].json == {
        "amount": {"currencyCode": "AED", "value": 4000}
    }

    rest = await post_op(client, auth, "capture")  # omitted amount: all that remains
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == "60.00"
    assert [c.value for c in fake.payment(order_ref).captures] == [4000, 6000]
    assert fake.payment(order_ref).state == "CAPTURED"
    parent = await seed.find()
    assert parent is not None and parent.captured == 10000


async def test_capture_in_a_three_decimal_currency(
    client: httpx.AsyncClient, seed: Seed, fake: FakeNgenius, auth: dict[str, str]
) -> None:
    await ngenius_payment(seed, fake, amount="12.345", currency="KWD")
    reply = await post_op(client, auth, "capture", "1.005")
    assert reply.status_code == 200, reply.text
    assert reply.json()["amount"] == "1.005"
    assert fake.calls("POST", "/captures")[0].json == {
        "amount": {"currencyCode": "KWD", "value": 1005}
    }


async def test_refund_of_a_purchase(
    client: httpx.AsyncClient, seed: Seed, fake: FakeNgenius, auth: dict[str, str]
) -> None:
    order_ref, payment_ref = await ngenius_payment(seed, fake, state="paid")
    reply = await post_op(client, auth, "refund", "25.00")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["operation"], body["amount"], body["txn"]["state"]) == (
        "refund",
        "25.00",
        "refunded",
    )
    call = fake.calls("POST", "/refund")[0]
    assert call.path == (
        f"/transactions/outlets/{OUTLET}/orders/{order_ref}/payments/"
        f"{payment_ref}/captures/sale/refund"
    )
    assert call.json == {"amount": {"currencyCode": "AED", "value": 2500}}
    assert fake.payment(order_ref).state == "PARTIALLY_REFUNDED"
    parent = await seed.find()
    assert parent is not None and parent.refunded == 2500


async def test_refund_after_capture(
    client: httpx.AsyncClient, seed: Seed, fake: FakeNgenius, auth: dict[str, str]
) -> None:
    order_ref, _ = await ngenius_payment(seed, fake)
    assert (await post_op(client, auth, "capture", "100.00")).status_code == 200
    reply = await post_op(client, auth, "refund", "30.00")
    assert reply.status_code == 200, reply.text
    assert reply.json()["txn"]["state"] == "refunded"
    capture = fake.payment(order_ref).captures[0]
    assert fake.calls("POST", "/refund")[0].path.endswith(f"/captures/{capture.ref}/refund")


async def test_void(
    client: httpx.AsyncClient, seed: Seed, fake: FakeNgenius, auth: dict[str, str]
) -> None:
    order_ref, _ = await ngenius_payment(seed, fake)
    reply = await post_op(client, auth, "void")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert (body["operation"], body["amount"], body["txn"]["state"]) == ("void", "100.00", "voided")
    assert fake.payment(order_ref).state == "REVERSED"
    assert fake.calls("PUT", "/cancel")[0].body == b""


async def test_refund_requested_is_queued_then_reconciled(
    client: httpx.AsyncClient,
    seed: Seed,
    fake: FakeNgenius,
    auth: dict[str, str],
    ctx: AppContext,
) -> None:
    await ngenius_payment(seed, fake, state="paid")
    fake.inject("refund", "queue")
    reply = await post_op(client, auth, "refund", "10.00")
    assert reply.status_code == 200, reply.text
    assert reply.json()["txn"]["state"] == "refund_queued"
    [operation] = await seed.operations()
    assert operation.state == "queued"

    await reconcile_once(ctx)  # still REQUESTED at the gateway
    assert (await seed.operations())[0].state == "queued"
    fake.settle_requested_refunds()
    await reconcile_once(ctx)
    [operation] = await seed.operations()
    assert operation.state == "succeeded"
    parent = await seed.find()
    assert parent is not None and parent.refunded == 1000


async def test_webhook_prompts_a_confirming_inquiry(
    client: httpx.AsyncClient,
    seed: Seed,
    fake: FakeNgenius,
    auth: dict[str, str],
) -> None:
    """An authentic N-Genius webhook is only a hint: PayOps asks the gateway, which says the
    queued refund has settled. A webhook without the secret header changes nothing."""
    secret = "whk_5c1f0e7a9b3d4e2f8a6c0b1d7e9f2a4c"
    order_ref, _ = await ngenius_payment(seed, fake, state="paid", webhook_secret=secret)
    fake.inject("refund", "queue")
    assert (await post_op(client, auth, "refund", "10.00")).json()["txn"]["state"] == (
        "refund_queued"
    )
    fake.settle_requested_refunds()
    order = fake.orders[order_ref]
    body = {
        "eventId": "8f0b6c1e-0000-4000-8000-000000000002",
        "eventName": "REFUNDED",
        "outletId": OUTLET,
        "order": order_status_response(fake.url, order),
    }
    forged = await client.post(
        "/b/pg/notifications/ngenius-aed", json=body, headers={"X-PayOps-Webhook-Secret": "guess"}
    )
    assert forged.status_code == 401
    assert (await seed.operations())[0].state == "queued"
    genuine = await client.post(
        "/b/pg/notifications/ngenius-aed", json=body, headers={"X-PayOps-Webhook-Secret": secret}
    )
    assert genuine.status_code == 200, genuine.text
    [operation] = await seed.operations()
    assert operation.state == "succeeded"
    parent = await seed.find()
    assert parent is not None and parent.refunded == 1000


# -- failures --------------------------------------------------------------------------------------


async def test_gateway_decline(
    client: httpx.AsyncClient, seed: Seed, fake: FakeNgenius, auth: dict[str, str]
) -> None:
    order_ref, _ = await ngenius_payment(seed, fake)
    fake.inject("capture", "decline")
    reply = await post_op(client, auth, "capture", "50.00")
    assert reply.status_code == 400
    assert reply.json() == {
        "detail": "The capture was declined by the acquirer",
        "operation": "capture",
        "result": "failed",
        "pg_response": declined_response("capture"),
    }
    [operation] = await seed.operations()
    assert operation.state == "failed"
    # the reservation is released: the whole amount can still be captured
    again = await post_op(client, auth, "capture", "100.00")
    assert again.status_code == 200, again.text
    assert fake.payment(order_ref).captures[0].value == 10000


@pytest.mark.parametrize(
    ("operation", "perform", "final"),
    [
        ("capture", True, "succeeded"),
        ("capture", False, "failed"),
        ("void", True, "succeeded"),
        ("refund", False, "failed"),
    ],
    ids=["capture-done", "capture-not-done", "void-done", "refund-not-done"],
)
async def test_timeout_answers_504_then_the_reconciler_settles_it(
    client: httpx.AsyncClient,
    seed: Seed,
    fake: FakeNgenius,
    auth: dict[str, str],
    ctx: AppContext,
    operation: str,
    perform: bool,
    final: str,
) -> None:
    state = "paid" if operation == "refund" else "authorized"
    order_ref, _ = await ngenius_payment(seed, fake, state=state, timeout=SHORT)
    await prewarm(fake, order_ref)
    fake.inject(operation, "timeout", perform=perform)
    amount = None if operation == "void" else "20.00"
    reply = await post_op(client, auth, operation, amount)
    await assert_unconfirmed(reply, seed, operation)

    summary = await reconcile_once(ctx)
    assert summary.examined == 1
    [settled] = await seed.operations()
    assert settled.state == final
    parent = await seed.find()
    assert parent is not None
    performed = {"capture": parent.captured, "refund": parent.refunded, "void": parent.voided}
    expected = {"capture": 2000, "refund": 2000, "void": 10000}[operation] if perform else 0
    assert performed[operation] == expected
    payment = fake.payment(order_ref)
    at_gateway = {
        "capture": sum(c.value for c in payment.captures),
        "refund": sum(r.value for r in payment.refunds),
        "void": 10000 if payment.state == "REVERSED" else 0,
    }[operation]
    assert at_gateway == expected


@pytest.mark.parametrize("operation", ["capture", "void"])
async def test_operation_not_enabled_for_the_configuration(
    client: httpx.AsyncClient,
    seed: Seed,
    fake: FakeNgenius,
    auth: dict[str, str],
    operation: str,
) -> None:
    await ngenius_payment(seed, fake, enabled_operations=["refund", "inquiry"])
    reply = await post_op(client, auth, operation, None if operation == "void" else "10.00")
    assert reply.status_code == 400
    assert reply.json() == {"detail": NOT_SUPPORTED, "operation": operation, "result": "failed"}
    assert fake.operations() == []


async def test_secrets_never_appear_in_responses(
    client: httpx.AsyncClient,
    seed: Seed,
    fake: FakeNgenius,
    auth: dict[str, str],
    ctx: AppContext,
) -> None:
    order_ref, _ = await ngenius_payment(seed, fake, timeout=SHORT)
    await prewarm(fake, order_ref)
    replies = [await post_op(client, auth, "capture", "10.00")]
    fake.inject("capture", "decline")
    replies.append(await post_op(client, auth, "capture", "10.00"))
    fake.inject("capture", "timeout")
    replies.append(await post_op(client, auth, "capture", "10.00"))
    await reconcile_once(ctx)
    fake.expire_tokens()  # a 401 and a token re-issue on the way
    replies.append(await post_op(client, auth, "capture", "10.00"))
    replies.append(await client.post("/b/pbl/v1/inquiry/ORD-1", headers=auth))
    assert [r.status_code for r in replies] == [200, 400, 504, 200, 200]
    assert len(fake.tokens) == 2
    for reply in replies:
        for secret in (API_KEY, CARD_TOKEN, *fake.tokens):
            assert secret not in reply.text
        assert "cardToken" not in reply.text
