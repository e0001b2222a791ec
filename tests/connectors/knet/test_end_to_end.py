"""KNET through PayOps's HTTP API (v1 and v2) against the fake tranportal, on SQLite and
PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

import logging
from decimal import Decimal

import httpx
import pytest

from payops.context import AppContext
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.knet import fake_server
from tests.connectors.knet.fake_server import TRANPORTAL_ID, TRANPORTAL_PASSWORD, FakeKnet
from tests.e2e import assert_unconfirmed, gateway_options, post_op, post_v2_op, v2_inquiry
from tests.helpers import Seed

fake_knet = fake_server.fake_knet
auth = e2e.auth
settings_overrides = e2e.settings_overrides


async def knet_payment(
    seed: Seed, fake: FakeKnet, *, amount: str = "25.000", timeout: float | None = None
) -> str:
    payment_id = fake.add_payment("TRK20261130A", amount)
    await seed.imported(
        connector="knet",
        code="knet-kwd",
        amount=amount,
        currency="KWD",
        gateway_refs={"track_id": "TRK20261130A", "payment_id": payment_id},
        credentials={"tranportal_id": TRANPORTAL_ID, "tranportal_password": TRANPORTAL_PASSWORD},
        options=gateway_options(fake.url, timeout),
    )
    return payment_id


async def test_refunds_v1_and_v2(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_knet: FakeKnet,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await knet_payment(seed, fake_knet)
    first = await post_op(client, auth, "refund", "10.000")
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["success"], body["amount"], body["txn"]["state"]) == (True, "10.000", "refunded")
    assert body["pg_response"]["result"] == "CAPTURED"
    assert fake_knet.sent_fields()["amt"] == "10.000"
    assert fake_knet.sent_fields()["udf5"] == "TrackID"

    parent = await seed.find("ORD-1")
    assert parent is not None
    second = await post_v2_op(client, auth, "refund", parent.session_id, "5.500")
    assert second.status_code == 200, second.text
    inquiry = await v2_inquiry(client, auth, parent.session_id)
    assert inquiry.status_code == 200 and inquiry.json()["refunded_amount"] == "15.500"
    assert [str(a) for a in fake_knet.payments["TRK20261130A"].refunds] == ["10.000", "5.500"]
    assert len(fake_knet.requests) == 2  # the paid transaction's inquiry answers from storage
    for response in (first, second, inquiry):
        assert TRANPORTAL_PASSWORD not in response.text
    assert TRANPORTAL_PASSWORD not in caplog.text


async def test_knet_refusals_are_400_and_change_nothing(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_knet: FakeKnet,
) -> None:
    await knet_payment(seed, fake_knet)
    fake_knet.payments["TRK20261130A"].refunds.append(Decimal("20.000"))  # portal
    refused = await post_op(client, auth, "refund", "10.000")
    assert refused.status_code == 400
    assert refused.json()["detail"].startswith("KNET IPAY0100137")
    assert refused.json()["result"] == "failed"
    fake_knet.refunds_enabled = False
    disabled = await post_op(client, auth, "refund", "1.000")
    assert disabled.status_code == 400 and "IPAY0100033" in disabled.json()["detail"]
    for operation in ("capture", "void"):
        response = await post_op(client, auth, operation)
        assert response.status_code == 400
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 0
    assert [op.state for op in await seed.operations()] == ["failed", "failed"]


@pytest.mark.parametrize("performed", [True, False])
async def test_a_lost_refund_reply_goes_to_review_and_is_never_resent(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_knet: FakeKnet,
    performed: bool,
) -> None:
    fake_knet.hang_seconds = 1.5
    payment_id = await knet_payment(seed, fake_knet, timeout=0.5)
    fake_knet.fail_next("timeout", apply=performed)
    response = await post_op(client, auth, "refund", "7.000")
    operation = await assert_unconfirmed(response, seed, "refund")

    summary = await reconcile_once(ctx)
    assert summary.examined == 1
    [operation] = await seed.operations()
    assert operation.state == "needs_review"
    for text in ("TRK20261130A", payment_id, "7.000 KWD", "merchant.htm"):
        assert text in operation.message
    assert len(fake_knet.requests) == 1  # never resent, nothing asked
    await reconcile_once(ctx)
    assert len(fake_knet.requests) == 1
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 0
    # while in review the amount stays reserved: only 18.000 more can be refunded
    over = await post_op(client, auth, "refund", "18.001")
    assert over.status_code == 400 and "refundable" in over.json()["detail"]
