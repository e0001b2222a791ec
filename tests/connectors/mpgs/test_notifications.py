"""MPGS notifications through ``POST /b/pg/notifications/{pg_code}``: verified by the secret header,
then confirmed by inquiry before anything changes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest

from payops.webhooks import outbox
from tests.connectors.mpgs.fake_server import (  # noqa: F401 - mpgs_fake is a fixture
    API_PASSWORD,
    MERCHANT_ID,
    FakeMpgs,
    StoredTransaction,
    mpgs_fake,
)
from tests.helpers import Seed

SECRET = "notification-secret-7"
ORDER = "MPGS-ORD-9"
URL = "/b/pg/notifications/mpgs-kwd"


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.superuser()


async def queued_refund(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs, auth: dict[str, str]
) -> str:
    fake.add_order(ORDER, "100.000", "KWD", mode="purchase", transaction_id="PAY-1")
    await seed.imported(
        connector="mpgs",
        code="mpgs-kwd",
        amount="100.000",
        currency="KWD",
        state="paid",
        gateway_refs={"order_id": ORDER, "transaction_id": "PAY-1"},
        credentials={"merchant_id": MERCHANT_ID, "api_password": API_PASSWORD},
        options={"base_url": fake.url, "timeout_seconds": 5},
        webhook_secret=SECRET,
    )
    fake.fail_next("queue")
    response = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "5.000"}, headers=auth
    )
    assert response.status_code == 200 and response.json()["txn"]["state"] == "refund_queued"
    return str(response.json()["reference_number"])


def notification(reference: str, result: str = "SUCCESS") -> dict[str, Any]:
    return {
        "merchant": MERCHANT_ID,
        "result": result,
        "order": {"id": ORDER, "amount": 100.0, "currency": "KWD"},
        "response": {"gatewayCode": "APPROVED" if result == "SUCCESS" else "DECLINED"},
        "transaction": {"id": reference, "type": "REFUND", "amount": 5.0, "currency": "KWD"},
    }


async def test_authentic_notification_settles_after_confirming_by_inquiry(
    client: httpx.AsyncClient,
    seed: Seed,
    mpgs_fake: FakeMpgs,
    auth: dict[str, str],  # noqa: F811
) -> None:
    reference = await queued_refund(client, seed, mpgs_fake, auth)
    # The notification claims success, but the gateway still says pending: nothing changes.
    early = await client.post(
        URL, json=notification(reference), headers={"X-Notification-Secret": SECRET}
    )
    assert early.status_code == 200
    assert [op.state for op in await seed.operations()] == ["queued"]

    mpgs_fake.settle_pending(ORDER, reference)
    settled = await client.post(
        URL, json=notification(reference), headers={"X-Notification-Secret": SECRET}
    )
    assert settled.status_code == 200 and settled.json() == {"detail": "Success"}
    [operation] = await seed.operations()
    assert operation.state == "succeeded"
    parent = await seed.find()
    assert parent is not None and parent.refunded == 5000


async def test_forged_notifications_change_nothing(
    client: httpx.AsyncClient,
    seed: Seed,
    mpgs_fake: FakeMpgs,
    auth: dict[str, str],  # noqa: F811
) -> None:
    reference = await queued_refund(client, seed, mpgs_fake, auth)
    mpgs_fake.settle_pending(ORDER, reference)
    before = await seed.snapshot()
    for headers in ({}, {"X-Notification-Secret": "guess"}, {"X-Notification-Secret": ""}):
        response = await client.post(URL, json=notification(reference), headers=headers)
        assert response.status_code == 401
        assert response.json() == {"detail": "Unable to verify notification"}
    assert await seed.snapshot() == before


async def test_unknown_or_silent_gateways_are_not_found(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    await seed.gateway("sandbox-kwd")
    assert (await client.post("/b/pg/notifications/nope", json={})).status_code == 404
    assert (await client.post("/b/pg/notifications/sandbox-kwd", json={})).status_code == 404


async def test_refund_made_on_the_gateway_dashboard_is_recorded_once(
    client: httpx.AsyncClient,
    seed: Seed,
    mpgs_fake: FakeMpgs,
    auth: dict[str, str],  # noqa: F811
) -> None:
    mpgs_fake.add_order(ORDER, "100.000", "KWD", mode="purchase", transaction_id="PAY-1")
    await seed.imported(
        connector="mpgs",
        code="mpgs-kwd",
        amount="100.000",
        currency="KWD",
        state="paid",
        gateway_refs={"order_id": ORDER, "transaction_id": "PAY-1"},
        credentials={"merchant_id": MERCHANT_ID, "api_password": API_PASSWORD},
        options={"base_url": mpgs_fake.url, "timeout_seconds": 5},
        webhook_secret=SECRET,
    )
    async with seed.ctx.db.write() as session:
        await outbox.set_merchant_setting(
            session, outbox.OPERATIONS_URL_SETTING, "https://merchant.example/ops"
        )
    # Through PayOps: a refund of 2.000. On the dashboard: a refund of 7.000 PayOps never saw.
    ours = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "2.000"}, headers=auth
    )
    assert ours.status_code == 200
    order = mpgs_fake.orders[ORDER]
    order.transactions["DASH-1"] = StoredTransaction(
        id="DASH-1",
        type="REFUND",
        amount=Decimal("7.000"),
        currency="KWD",
        result="SUCCESS",
        gateway_code="APPROVED",
    )
    for _ in range(2):  # a repeated notification records nothing twice
        response = await client.post(
            URL, json=notification("DASH-1"), headers={"X-Notification-Secret": SECRET}
        )
        assert response.status_code == 200
    operations = await seed.operations()
    assert [(op.source, op.state, op.amount) for op in operations] == [
        ("input", "succeeded", 2000),
        ("pg", "succeeded", 7000),
    ]
    parent = await seed.find()
    assert parent is not None and parent.refunded == 9000
    webhooks = [e.payload for e in await seed.outbox() if e.kind == "operation"]
    assert [(w["source"], w["amount"], w["txn"]["state"]) for w in webhooks] == [
        ("input", "2.000", "refunded"),
        ("pg", "7.000", "refunded"),
    ]
    # What remains refundable accounts for the dashboard refund.
    over = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "91.001"}, headers=auth
    )
    assert over.json()["detail"] == "Amount exceeds the refundable amount (91.000 KWD)"
