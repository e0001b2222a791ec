"""PayU India through PayOps's HTTP API (v1 and v2) against the fake postservice, on SQLite and
PostgreSQL: queued refunds, capture and void followed by the reconciler."""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl

import httpx
import pytest

from payops.context import AppContext
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.payu_india import fake_server
from tests.connectors.payu_india.fake_server import MERCHANT_KEY, SALT, FakePayu
from tests.e2e import UNCONFIRMED, gateway_options, post_op, post_v2_op, states
from tests.helpers import Seed

fake_payu = fake_server.fake_payu
auth = e2e.auth
settings_overrides = e2e.settings_overrides


async def payu_payment(
    seed: Seed,
    fake: FakePayu,
    *,
    state: str = "paid",
    amount: str = "500.00",
    timeout: float | None = None,
) -> str:
    mihpayid = fake.add_payment(
        "TXN0001", amount, state="auth" if state == "authorized" else "captured"
    )
    await seed.imported(
        connector="payu_india",
        code="payu-inr",
        amount=amount,
        currency="INR",
        state=state,
        gateway_refs={"mihpayid": mihpayid, "txnid": "TXN0001"},
        credentials={"merchant_key": MERCHANT_KEY, "salt": SALT},
        options=gateway_options(fake.url, timeout),
    )
    return mihpayid


async def test_queued_refund_followed_to_its_final_state(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_payu: FakePayu,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    mihpayid = await payu_payment(seed, fake_payu)
    response = await post_op(client, auth, "refund", "150.00")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["result"], body["txn"]["state"]) == ("queued", "refund_queued")
    sent = dict(parse_qsl(fake_payu.requests[-1].body.decode()))
    assert (sent["command"], sent["var1"], sent["var2"], sent["var3"]) == (
        "cancel_refund_transaction",
        mihpayid,
        body["reference_number"],
        "150.00",
    )

    await reconcile_once(ctx)
    assert await states(seed) == ["queued"]
    [action] = fake_payu.actions(mihpayid)
    fake_payu.settle_action(action.request_id, "SUCCESS")
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded"]
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 15_000

    # a second one through v2, which PayU then fails
    second = await post_v2_op(client, auth, "refund", parent.session_id, "50.00")
    assert second.status_code == 200 and second.json()["result"] == "queued"
    fake_payu.settle_action(fake_payu.actions(mihpayid)[1].request_id, "FAILURE")
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded", "rejected"]
    for text in (response.text, second.text, caplog.text):
        assert SALT not in text


async def test_capture_and_void_of_authorisations(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_payu: FakePayu,
) -> None:
    mihpayid = await payu_payment(seed, fake_payu, state="authorized", amount="800.00")
    # PayU queues the cancel: PayOps says "not confirmed yet" and the reconciler follows it
    void = await post_op(client, auth, "void")
    assert void.status_code == 504 and void.json()["detail"] == UNCONFIRMED
    [cancel] = fake_payu.actions(mihpayid)
    assert (cancel.action, str(cancel.amount)) == ("cancel", "800.00")
    await reconcile_once(ctx)
    assert await states(seed) == ["processing"]
    fake_payu.settle_action(cancel.request_id, "SUCCESS")
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded"]
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.voided == 80_000


async def test_capture_is_followed_by_the_reconciler(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_payu: FakePayu,
) -> None:
    mihpayid = await payu_payment(seed, fake_payu, state="authorized", amount="800.00")
    capture = await post_op(client, auth, "capture", "300.00")
    assert capture.status_code == 504
    [action] = fake_payu.actions(mihpayid)
    fake_payu.settle_action(action.request_id, "SUCCESS")
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded"]
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.captured == 30_000


async def test_refusals_and_a_lost_reply(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_payu: FakePayu,
) -> None:
    mihpayid = await payu_payment(seed, fake_payu, timeout=0.5)
    fake_payu.fail_next("decline", message="214")
    refused = await post_op(client, auth, "refund", "10.00")
    assert refused.status_code == 400 and refused.json()["detail"].startswith("PayU 214")
    fake_payu.fail_next("reset", apply=True)
    lost = await post_op(client, auth, "refund", "20.00")
    assert lost.status_code == 504
    await reconcile_once(ctx)  # found again by its token, never resent
    assert await states(seed) == ["failed", "queued"]
    assert len(fake_payu.actions(mihpayid)) == 1
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 0


async def test_the_unsigned_refund_callback_is_only_a_hint(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_payu: FakePayu,
) -> None:
    mihpayid = await payu_payment(seed, fake_payu)
    queued = await post_op(client, auth, "refund", "40.00")
    reference = queued.json()["reference_number"]
    [action] = fake_payu.actions(mihpayid)
    callback = {
        "mihpayid": mihpayid,
        "request_id": action.request_id,
        "token": reference,
        "amt": "40.00",
        "status": "success",
        "action": "refund",
        "key": MERCHANT_KEY,
    }
    # Anyone can post this: PayOps asks PayU, which still says QUEUED, so nothing changes.
    answer = await client.post("/b/pg/notifications/payu-inr", json=callback)
    assert answer.status_code == 200
    assert await states(seed) == ["queued"]
    fake_payu.settle_action(action.request_id, "SUCCESS")
    await client.post("/b/pg/notifications/payu-inr", json=callback)
    assert await states(seed) == ["succeeded"]
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 4_000
    refused = await client.post("/b/pg/notifications/payu-inr", content=b"garbage")
    assert refused.status_code == 401
