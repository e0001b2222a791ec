"""A refund made on Tabby's dashboard is recorded by PayOps (``source: "pg"``) once an authentic
notification arrives, exactly once, next to PayOps's own refund."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.connectors.tabby import fake_server
from tests.connectors.tabby.fake_server import TEST_SECRET_KEY, FakeTabby
from tests.helpers import Seed

fake_tabby = fake_server.fake_tabby  # the fake's fixture, used by this module
SECRET = "tabby-hook-secret"
URL = "/b/pg/notifications/tabby-kwd"


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.api_key()


async def test_refund_made_on_the_tabby_dashboard_is_recorded_once(
    client: httpx.AsyncClient,
    seed: Seed,
    fake_tabby: FakeTabby,
    auth: dict[str, str],  # noqa: F811
) -> None:
    payment_id = fake_tabby.paid_payment("100.000", "KWD")  # captured in full, so CLOSED
    await seed.imported(
        connector="tabby",
        code="tabby-kwd",
        amount="100.000",
        currency="KWD",
        state="paid",
        gateway_refs={"payment_id": payment_id},
        credentials={"secret_key": TEST_SECRET_KEY},
        options={"base_url": fake_tabby.url},
        webhook_secret=SECRET,
    )
    # Through PayOps: a refund of 2.000. On Tabby's dashboard: a refund of 7.000 PayOps never saw.
    ours = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "2.000"}, headers=auth
    )
    assert ours.status_code == 200, ours.text
    assert ours.json()["txn"]["state"] == "refunded"
    with fake_tabby.lock:
        payment = fake_tabby.payments[payment_id]
        dashboard = fake_tabby._movement(payment, Decimal("7.000"), "dashboard-refund")
        payment.refunds.append(dashboard)
    body = {"id": payment_id, "status": "CLOSED", "captures": [], "refunds": []}
    for _ in range(2):  # a repeated notification records nothing twice
        response = await client.post(URL, json=body, headers={"X-PayOps-Webhook-Secret": SECRET})
        assert response.status_code == 200, response.text
    operations = await seed.operations()
    assert [(op.operation, op.source, op.state, op.amount) for op in operations] == [
        ("refund", "input", "succeeded", 2000),
        ("refund", "pg", "succeeded", 7000),
    ]
    assert operations[1].gateway_refs == {"gateway_id": dashboard["id"]}
    parent = await seed.find()
    assert parent is not None and parent.refunded == 9000
