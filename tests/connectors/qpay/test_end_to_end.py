"""QPay through PayOps's HTTP API (v1 and v2) against the fake EZ-Connect gateway, on SQLite and
PostgreSQL."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from payops.context import AppContext
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.qpay import fake_server
from tests.connectors.qpay.fake_server import BANK_ID, MERCHANT_ID, SECRET, FakeQpay
from tests.e2e import gateway_options, post_op, post_v2_op, states
from tests.helpers import Seed

fake_qpay = fake_server.fake_qpay
auth = e2e.auth
settings_overrides = e2e.settings_overrides

PUN = "PUN0000000000000001"


async def qpay_payment(
    seed: Seed,
    fake: FakeQpay,
    *,
    amount: str = "200.00",
    timeout: float | None = None,
    **options: Any,
) -> None:
    fake.add_payment(PUN, int(amount.replace(".", "")))
    await seed.imported(
        connector="qpay",
        code="qpay-qar",
        amount=amount,
        currency="QAR",
        gateway_refs={"pun": PUN},
        credentials={"merchant_id": MERCHANT_ID, "bank_id": BANK_ID, "secret_key": SECRET},
        options=gateway_options(fake.url, timeout, **options),
    )


async def test_a_full_refund_is_queued(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_qpay: FakeQpay,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    await qpay_payment(seed, fake_qpay)
    partial = await post_op(client, auth, "refund", "50.00")
    assert partial.status_code == 400 and "whole payment" in partial.json()["detail"]
    assert fake_qpay.requests == []

    parent = await seed.find("ORD-1")
    assert parent is not None
    full = await post_v2_op(client, auth, "refund", parent.session_id)
    assert full.status_code == 200, full.text
    body = full.json()
    assert (body["result"], body["amount"], body["txn"]["state"]) == (
        "queued",
        "200.00",
        "refund_queued",
    )
    sent = fake_qpay.sent()
    assert (sent["Action"], sent["Amount_1"], sent["PUN_1"]) == (
        "6",
        "20000",
        body["reference_number"],
    )
    assert fake_qpay.payments[PUN].refunds == {body["reference_number"]: 20_000}

    # QPay has no refund status: the reconciler asks Action 14 about the payment, which cannot
    # tell; the refund stays queued (reserved) for the queued-refund review rule
    await reconcile_once(ctx)
    assert fake_qpay.sent()["Action"] == "14"
    assert await states(seed) in (["failed", "queued"], ["failed", "needs_review"])
    assert SECRET not in full.text + caplog.text


async def test_partial_refunds_when_configured_and_qpay_refusals(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_qpay: FakeQpay,
) -> None:
    fake_qpay.partial_refunds = True
    await qpay_payment(seed, fake_qpay, partial_refunds="true")
    ok = await post_op(client, auth, "refund", "50.00")
    assert ok.status_code == 200 and ok.json()["result"] == "queued"
    fake_qpay.fail_next("decline", message="5011")
    refused = await post_op(client, auth, "refund", "10.00")
    assert refused.status_code == 400 and refused.json()["detail"].startswith("QPay 5011")
    for operation in ("capture", "void"):
        assert (await post_op(client, auth, operation)).status_code == 400


async def test_a_forged_or_lost_reply_goes_to_review(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_qpay: FakeQpay,
) -> None:
    await qpay_payment(seed, fake_qpay, timeout=0.5)
    fake_qpay.fail_next("bad_signature")
    response = await post_op(client, auth, "refund")
    assert response.status_code == 504
    await reconcile_once(ctx)
    assert await states(seed) == ["needs_review"]
    assert [dict(parse_qsl(r.body.decode()))["Action"] for r in fake_qpay.requests] == ["6", "14"]
    parent = await seed.find("ORD-1")
    assert parent is not None and parent.refunded == 0
